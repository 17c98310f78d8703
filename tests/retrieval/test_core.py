"""rankers.retrieval (the C++ core's front) against NumPy brute force.

Exact comparisons use the kernels' own float32 scores (score_candidates over all
items; the scan and score_candidates share one accumulation order) or integer-valued
matrices, where float32 and float64 agree exactly. Random float data is additionally
compared with a float64 reference up to float32 rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rankers import _C, retrieval as scoring

KERNELS = _C.available_kernels()
SETTINGS = settings(max_examples=60, deadline=None)


# ------------------------------------------------------------------ references


def kernel_scores(Q, X, kernel=None):
    """[B, N] float32 scores exactly as the kernels compute them."""
    ids = np.arange(X.shape[0], dtype=np.int64)
    return np.stack([scoring.score_candidates(q, X, ids, kernel=kernel) for q in Q])


def order(s, ids):
    """Indices into s/ids by (score desc, NaN last, id asc)."""
    nan = np.isnan(s)
    neg = np.where(nan, 0.0, -s.astype(np.float64))
    return np.lexsort((ids, neg, nan))


def ref_topk(S, k, exclude=None):
    B, N = S.shape
    scores = np.full((B, k), -np.inf, np.float32)
    idx = np.full((B, k), -1, np.int64)
    for b in range(B):
        keep = np.ones(N, bool)
        if exclude is not None:
            keep[np.asarray(exclude[b], dtype=np.int64)] = False
        ids = np.flatnonzero(keep)
        top = ids[order(S[b, ids], ids)][:k]
        scores[b, : top.size] = S[b, top]
        idx[b, : top.size] = top
    return scores, idx


def ref_ranks(S, targets, exclude=None):
    """rank_t = 1 + #{non-excluded non-target j: s_j >= s_t} + #{targets t' before t}."""
    out = []
    N = S.shape[1]
    for b, tg in enumerate(targets):
        s = S[b]
        tset = np.unique(np.asarray(tg, dtype=np.int64))
        keep = np.ones(N, bool)
        keep[tset] = False
        if exclude is not None:
            keep[np.asarray(exclude[b], dtype=np.int64)] = False
        others = s[keep]
        before = {int(t): p for p, t in enumerate(tset[order(s[tset], tset)])}
        ranks = []
        for t in np.asarray(tg, dtype=np.int64):
            st_ = s[t]
            if np.isnan(st_):
                ge = others.size  # every item ranks at or above a NaN target
            else:
                ge = int(np.sum(others >= st_))
            ranks.append(1 + ge + before[int(t)])
        out.append(np.array(ranks, dtype=np.int64))
    return out


def assert_same(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def ints(rng, *shape, lo=-2, hi=3):
    return rng.integers(lo, hi, size=shape).astype(np.float32)


# ------------------------------------------------------------------ kernels


def test_default_kernel_is_one_of_the_available():
    assert KERNELS[0] == "scalar"
    assert scoring.kernel_name() in KERNELS
    assert scoring.available_kernels() == KERNELS


@pytest.mark.parametrize("env, ok", [("scalar", True), ("bogus", False)])
def test_env_var_forces_kernel(env, ok):
    code = "from rankers import _C; print(_C.kernel_name())"
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "RANKERS_KERNEL": env},
        capture_output=True,
        text=True,
    )
    if ok:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == env
    else:
        assert r.returncode != 0
        assert "RANKERS_KERNEL=" in r.stderr and "ValueError" in r.stderr


def test_unknown_kernel_argument_raises():
    X = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="not a kernel"):
        scoring.topk(X, X, 1, kernel="sse9")


@pytest.mark.parametrize("d", [1, 3, 8, 15, 16, 17, 31, 33, 64, 100])
def test_all_kernels_and_tilings_bit_identical(d):
    rng = np.random.default_rng(d)
    X, Q = rand(rng, 301, d), rand(rng, 13, d)
    base = scoring.topk(Q, X, 20, kernel="scalar", item_tile=1, query_block=1)
    base_scores = kernel_scores(Q, X, kernel="scalar")
    for kernel in KERNELS:
        np.testing.assert_array_equal(kernel_scores(Q, X, kernel=kernel), base_scores)
        for item_tile, query_block in [(None, None), (1, 1), (5, 3), (16, 8), (17, 7), (48, 2), (1000, 100)]:
            got = scoring.topk(Q, X, 20, kernel=kernel, item_tile=item_tile, query_block=query_block)
            assert_same(got, base)
    assert_same(base, ref_topk(base_scores, 20))


def test_scores_match_float64_reference():
    rng = np.random.default_rng(1)
    X, Q = rand(rng, 500, 77), rand(rng, 6, 77)
    ref = Q.astype(np.float64) @ X.T.astype(np.float64)
    # rounding bound of a length-d float32 accumulation
    bound = 77 * 2.0**-24 * (np.abs(Q).astype(np.float64) @ np.abs(X).T.astype(np.float64)) + 1e-30
    for kernel in KERNELS:
        err = np.abs(kernel_scores(Q, X, kernel=kernel) - ref)
        assert np.all(err <= bound)


def test_fp_mode_of_caller_does_not_change_scores():
    # Denormal products: flush-to-zero in the caller's thread would change them.
    rng = np.random.default_rng(2)
    X = (rand(rng, 200, 24) * np.float32(1e-40)).astype(np.float32)  # denormal items
    Q = rand(rng, 3, 24)
    expect = scoring.topk(Q, X, 50, num_threads=1)
    assert np.any((np.abs(expect[0]) < np.finfo(np.float32).tiny) & (expect[0] != 0))
    if not torch.set_flush_denormal(True):
        pytest.skip("no flush-denormal mode on this CPU")
    try:
        got = scoring.topk(Q, X, 50, num_threads=1)
        cand = scoring.score_candidates(Q[0], X, expect[1][0])
    finally:
        torch.set_flush_denormal(False)
    assert_same(got, expect)
    np.testing.assert_array_equal(cand, expect[0][0])


# ------------------------------------------------------------------ topk


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "B, N, d, k",
    [(1, 1, 1, 1), (3, 5, 7, 5), (4, 15, 16, 3), (5, 17, 17, 17), (9, 100, 33, 10), (17, 250, 64, 250), (2, 1000, 5, 64)],
)
def test_topk_matches_bruteforce(kernel, B, N, d, k):
    rng = np.random.default_rng(B * 1000 + N)
    X, Q = rand(rng, N, d), rand(rng, B, d)
    got = scoring.topk(Q, X, k, kernel=kernel)
    assert got[0].dtype == np.float32 and got[1].dtype == np.int64
    assert got[0].shape == got[1].shape == (B, k)
    assert_same(got, ref_topk(kernel_scores(Q, X), k))
    # Against float64: a returned item may only differ from the reference where
    # float32 rounding makes it tie with the k-th best.
    ref = Q.astype(np.float64) @ X.T.astype(np.float64)
    kth = np.sort(ref, axis=1)[:, -k]
    assert np.all(np.take_along_axis(ref, got[1], 1) >= kth[:, None] - 1e-4)
    np.testing.assert_allclose(got[0], np.take_along_axis(ref, got[1], 1), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("N, d", [(1, 1), (15, 3), (16, 16), (17, 31), (100, 32), (333, 64), (1000, 70)])
def test_single_query_direct_scan_matches_tiled(kernel, N, d):
    # One query per thread reads the rows directly (no packed tiles) on AVX-512;
    # an explicit item_tile keeps the tiled path. Both must agree with brute force.
    rng = np.random.default_rng(N * 10 + d)
    X, q = rand(rng, N, d), rand(rng, d)
    X[N // 2] = np.nan
    exclude = rng.integers(0, N, N // 4)
    S = kernel_scores(q[None], X)
    for k in sorted({1, min(10, N), N}):
        ref = ref_topk(S, k, [exclude])
        for threads in (1, 2, 3):
            got = scoring.topk(q, X, k, exclude=exclude, num_threads=threads, kernel=kernel)
            assert_same((got[0][None], got[1][None]), ref)
        tiled = scoring.topk(q, X, k, exclude=exclude, kernel=kernel, item_tile=16)
        assert_same((tiled[0][None], tiled[1][None]), ref)


def test_single_query_direct_scan_split_over_threads():
    rng = np.random.default_rng(23)
    X, q = rand(rng, 140_001, 64), rand(rng, 64)  # large enough to split the items over threads
    ref = ref_topk(kernel_scores(q[None], X), 50)
    for kernel in KERNELS:
        for threads in (2, 3):
            got = scoring.topk(q, X, 50, num_threads=threads, kernel=kernel)
            assert_same((got[0][None], got[1][None]), ref)
    xb = scoring.to_bf16(X)
    tiled = scoring.topk(q, X, 50, approx=xb, item_tile=64)
    np.testing.assert_array_equal(tiled[0], scoring.score_candidates(q, X, tiled[1]))
    for kernel in KERNELS:
        assert_same(scoring.topk(q, X, 50, num_threads=2, kernel=kernel, approx=xb), tiled)


@pytest.mark.parametrize("kernel", KERNELS)
def test_topk_ties_broken_by_lower_index(kernel):
    rng = np.random.default_rng(3)
    X, Q = ints(rng, 400, 6), ints(rng, 9, 6)
    exact = (Q.astype(np.float64) @ X.T.astype(np.float64)).astype(np.float32)  # integers: exact
    for k in (1, 7, 64, 400):
        got = scoring.topk(Q, X, k, kernel=kernel, item_tile=32)
        assert_same(got, ref_topk(exact, k))
    X2 = np.ones((50, 4), np.float32)  # all tied
    s, i = scoring.topk(np.ones(4, np.float32), X2, 10, kernel=kernel)
    np.testing.assert_array_equal(i, np.arange(10))
    np.testing.assert_array_equal(s, np.full(10, 4.0, np.float32))


@pytest.mark.parametrize("kernel", KERNELS)
def test_topk_nan_rows_rank_after_numbers(kernel):
    rng = np.random.default_rng(4)
    X, Q = ints(rng, 60, 5), ints(rng, 4, 5)
    X[[3, 10, 11, 40]] = np.nan
    X[7] = -np.inf  # scores +-inf or NaN (0 * inf)
    exact = kernel_scores(Q, X)
    for k in (5, 56, 60):
        got = scoring.topk(Q, X, k, kernel=kernel, item_tile=16)
        assert_same(got, ref_topk(exact, k))
    s, i = scoring.topk(Q, X, 60, kernel=kernel)
    nan_pos = np.isnan(s)
    # NaNs only in a tail, in index order
    for b in range(4):
        n = nan_pos[b].sum()
        assert n >= 4 and nan_pos[b, 60 - n :].all()
        assert np.all(np.diff(i[b, 60 - n :]) > 0)
    # a NaN query ranks nothing: refused (it used to return the first k items, all NaN)
    with pytest.raises(ValueError, match=r"queries\[0\] is nan"):
        scoring.topk(np.full(5, np.nan, np.float32), X, 8, kernel=kernel)


@pytest.mark.parametrize("kernel", KERNELS)
def test_topk_exclusions(kernel):
    rng = np.random.default_rng(5)
    N = 90
    X, Q = ints(rng, N, 7), ints(rng, 5, 7)
    exclude = [
        rng.integers(0, N, 40),  # duplicates, unsorted
        [],
        np.arange(N - 1)[::-1],  # all but the last one
        np.arange(N)[np.arange(N) % 3 != 0],  # leaves 30 < k
        torch.tensor([5, 5, 1]),
    ]
    exact = kernel_scores(Q, X)
    for k in (1, 10, 45):
        got = scoring.topk(Q, X, k, exclude=exclude, kernel=kernel, item_tile=16)
        assert_same(got, ref_topk(exact, k, exclude))
    s, i = scoring.topk(Q, X, 45, exclude=exclude, kernel=kernel)
    assert i[2, 0] == N - 1 and np.all(i[2, 1:] == -1) and np.all(s[2, 1:] == -np.inf)
    assert np.all(i[3, 30:] == -1) and np.all(i[3, :30] % 3 == 0)


def test_topk_everything_excluded_gives_padding():
    X = np.eye(4, dtype=np.float32)
    s, i = scoring.topk(X[0], X, 2, exclude=[0, 1, 2, 3])
    np.testing.assert_array_equal(i, [-1, -1])
    np.testing.assert_array_equal(s, [-np.inf, -np.inf])


def test_topk_input_conversions_give_same_result():
    rng = np.random.default_rng(6)
    X64, Q64 = rng.standard_normal((120, 12)), rng.standard_normal((6, 12))
    X, Q = X64.astype(np.float32), Q64.astype(np.float32)
    expect = scoring.topk(Q, X, 9)
    big = np.zeros((240, 24), np.float32)
    big[::2, ::2] = X  # non-contiguous view
    variants = [
        (Q64, X64),
        (Q, big[::2, ::2]),
        (np.asfortranarray(Q), np.asfortranarray(X)),
        (torch.from_numpy(Q), torch.from_numpy(X)),
        (torch.from_numpy(Q).requires_grad_(), torch.from_numpy(X).T.contiguous().T),
        (Q.tolist(), X),
    ]
    for q, x in variants:
        assert_same(scoring.topk(q, x, 9), expect)
    ints_q = np.arange(12).reshape(1, 12) % 3
    assert_same(scoring.topk(ints_q, X, 4), scoring.topk(ints_q.astype(np.float32), X, 4))
    s, i = scoring.topk(torch.from_numpy(Q[2]), X, 9)  # 1-D query -> 1-D results
    assert s.shape == i.shape == (9,)
    np.testing.assert_array_equal(i, expect[1][2])
    s, i = scoring.topk(Q[2], X, 9, exclude=torch.tensor([int(expect[1][2][0])]))
    np.testing.assert_array_equal(i[:8], expect[1][2][1:])


@pytest.mark.parametrize("kernel", ["scalar", KERNELS[-1]])
@pytest.mark.parametrize("B, N, d", [(3, 300_000, 16), (200, 3_000, 32)])  # item split, query split
def test_thread_count_does_not_change_results(kernel, B, N, d):
    rng = np.random.default_rng(7)
    X, Q = ints(rng, N, d), ints(rng, B, d)  # many exact ties across thread chunks
    exclude = [rng.integers(0, N, 50) for _ in range(B)]
    runs = [scoring.topk(Q, X, 25, exclude=exclude, num_threads=t, kernel=kernel) for t in (1, 2, 3)]
    for r in runs[1:]:
        assert_same(r, runs[0])
    tg = [rng.integers(0, N, 4) for _ in range(B)]
    ranks = [scoring.rank_targets(Q, X, tg, num_threads=t, kernel=kernel) for t in (1, 2, 3)]
    for r in ranks[1:]:
        for a, b in zip(r, ranks[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_threads_work_after_fork():
    # Threads are made per call, so a forked child (DataLoader workers) can score too.
    rng = np.random.default_rng(11)
    X, Q = rand(rng, 300_000, 16), rand(rng, 3, 16)
    expect = scoring.topk(Q, X, 5, num_threads=2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        ok = False
        try:
            got = scoring.topk(Q, X, 5, num_threads=2)
            ok = np.array_equal(got[1], expect[1])
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@SETTINGS
@given(
    data=st.data(),
    B=st.integers(1, 6),
    N=st.integers(1, 80),
    d=st.integers(1, 40),
    item_tile=st.integers(1, 40),
    query_block=st.integers(1, 8),
)
def test_topk_property(data, B, N, d, item_tile, query_block):
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X, Q = ints(rng, N, d), ints(rng, B, d)
    if data.draw(st.booleans()):
        X[rng.integers(0, N)] = np.nan
    k = data.draw(st.integers(1, N))
    exclude = None
    if data.draw(st.booleans()):
        exclude = [rng.integers(0, N, rng.integers(0, N + 3)) for _ in range(B)]
    kernel = data.draw(st.sampled_from(KERNELS))
    got = scoring.topk(Q, X, k, exclude=exclude, kernel=kernel, item_tile=item_tile, query_block=query_block)
    assert_same(got, ref_topk(kernel_scores(Q, X), k, exclude))


# ------------------------------------------------------------------ topk approx (bf16 scan)


def bf16_ref(X):
    """Round to nearest even to bfloat16, as torch does (NaN stays NaN)."""
    return torch.from_numpy(np.ascontiguousarray(X)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def test_to_bf16_rounds_to_nearest_even():
    rng = np.random.default_rng(20)
    X = rand(rng, 300, 17) * np.float32(1e3)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1e-40, -1e-45,
                        1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 1.0 + 2.0**-9], np.float32)
    X[0, : special.size] = special
    got = scoring.to_bf16(X)
    assert got.dtype == np.uint16 and got.shape == X.shape
    ok = ~np.isnan(X)
    np.testing.assert_array_equal(got[ok], bf16_ref(X)[ok])
    back = (got.astype(np.uint32) << 16).view(np.float32)
    assert np.isnan(back[~ok]).all()
    # NaN payloads in the low bits must not round to inf
    nan_low = np.array([0x7F800001, 0xFF800001, 0x7F80FFFF], np.uint32).view(np.float32)
    assert np.isnan((scoring.to_bf16(nan_low[None]).astype(np.uint32) << 16).view(np.float32)).all()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("B, N, d, k, factor", [(1, 1, 1, 1, 1), (3, 50, 7, 5, 2), (9, 300, 33, 10, 4), (4, 1000, 64, 20, 3), (2, 64, 16, 64, 1), (1, 1000, 64, 20, 3), (1, 333, 40, 7, 2)])
def test_topk_approx_scores_are_exact(kernel, B, N, d, k, factor):
    rng = np.random.default_rng(B * 100 + N)
    X, Q = rand(rng, N, d), rand(rng, B, d)
    xb = scoring.to_bf16(X)
    s, i = scoring.topk(Q, X, k, kernel=kernel, approx=xb, approx_factor=factor, item_tile=32)
    assert s.dtype == np.float32 and i.dtype == np.int64 and s.shape == i.shape == (B, k)
    S = kernel_scores(Q, X)
    np.testing.assert_array_equal(s, np.take_along_axis(S, i, 1))  # exact float32 scores
    for b in range(B):
        assert len(set(i[b])) == k
        np.testing.assert_array_equal(i[b], i[b][order(s[b], i[b])])  # best first, ties by index
    # the candidates are the best k * factor by bf16-rounded items; with those, exactly the reference
    Xr = (xb.astype(np.uint32) << 16).view(np.float32)
    Sa = kernel_scores(Q, Xr)
    C = min(k * factor, N)
    for b in range(B):
        cand = np.arange(N)[order(Sa[b], np.arange(N))][:C]
        top = cand[order(S[b, cand], cand)][:k]
        np.testing.assert_array_equal(i[b], top)
    # the same across kernels, tilings and threads
    # (default tiles: one query per thread scans the bf16 rows directly)
    for kw in [dict(kernel="scalar"), dict(item_tile=16, query_block=2), dict(num_threads=3), dict()]:
        assert_same(scoring.topk(Q, X, k, approx=xb, approx_factor=factor, **kw), (s, i))


@pytest.mark.parametrize("kernel", KERNELS)
def test_topk_approx_with_all_candidates_equals_exact(kernel):
    rng = np.random.default_rng(21)
    X, Q = rand(rng, 500, 24), rand(rng, 6, 24)
    X[[3, 77]] = np.nan
    xb = scoring.to_bf16(X)
    exclude = [rng.integers(0, 500, 30), [], np.arange(495), [1, 2], np.arange(500)[::2], []]
    for k in (1, 10, 100):
        exact = scoring.topk(Q, X, k, exclude=exclude, kernel=kernel)
        got = scoring.topk(Q, X, k, exclude=exclude, kernel=kernel, approx=xb, approx_factor=-(-500 // k))
        assert_same(got, exact)
    s, i = scoring.topk(Q, X, 10, exclude=exclude, approx=xb)
    assert np.all(i[2, 5:] == -1) and np.all(s[2, 5:] == -np.inf)  # padding
    assert not np.isin(i[0], exclude[0]).any()
    # torch bfloat16 tensors are accepted as the copy, 1-D queries too
    xt = torch.from_numpy(X).to(torch.bfloat16)
    assert_same(scoring.topk(Q[0], X, 10, approx=xt, approx_factor=50), scoring.topk(Q[0], X, 10))


def test_topk_approx_recall_on_gaussian_data():
    rng = np.random.default_rng(22)
    X, Q = rand(rng, 20000, 64), rand(rng, 200, 64)
    _, exact = scoring.topk(Q, X, 10)
    _, got = scoring.topk(Q, X, 10, approx=scoring.to_bf16(X), approx_factor=4)
    recall = np.mean([np.intersect1d(a, b).size / 10 for a, b in zip(exact, got)])
    assert recall >= 0.98  # measured 1.000 (factor 1: 0.998)


# ------------------------------------------------------------------ score_candidates


def test_score_candidates_matches_numpy_and_topk():
    rng = np.random.default_rng(8)
    X, q = rand(rng, 3000, 64), rand(rng, 64)
    ids = rng.integers(0, 3000, 1000)
    got = scoring.score_candidates(q, X, ids)
    assert got.dtype == np.float32 and got.shape == (1000,)
    np.testing.assert_allclose(got, X[ids].astype(np.float64) @ q.astype(np.float64), rtol=1e-5, atol=1e-5)
    s, i = scoring.topk(q, X, 100)
    np.testing.assert_array_equal(scoring.score_candidates(q, X, i), s)  # bit-identical
    # slow-path inputs give the same bits
    for args in [
        (q.astype(np.float64), X, ids),
        (q, X, ids.astype(np.int32)),
        (q, X, ids.astype(np.uint16) if ids.max() < 2**16 else ids),
        (torch.from_numpy(q), torch.from_numpy(X), torch.from_numpy(ids)),
        (q, X, list(ids)),
    ]:
        np.testing.assert_array_equal(scoring.score_candidates(*args), got)
    for n in (0, 1, 15, 16, 17, 63, 64, 65, 129):
        sub = ids[:n]
        for kernel in KERNELS:
            np.testing.assert_array_equal(scoring.score_candidates(q, X, sub, kernel=kernel), got[:n])


# ------------------------------------------------------------------ rank_targets


@pytest.mark.parametrize("kernel", KERNELS)
def test_rank_targets_matches_reference(kernel):
    rng = np.random.default_rng(9)
    N = 150
    X, Q = ints(rng, N, 5), ints(rng, 6, 5)
    X[[4, 77]] = np.nan
    targets = [rng.integers(0, N, rng.integers(1, 8)) for _ in range(6)]
    targets[1] = np.array([4, 77, 3, 3])  # NaN targets and a duplicate
    targets[2] = np.array([], np.int64)
    exclude = [np.setdiff1d(rng.integers(0, N, 30), t) for t in targets]
    exact = kernel_scores(Q, X)
    for ex in (None, exclude):
        got = scoring.rank_targets(Q, X, targets, exclude=ex, kernel=kernel, item_tile=16, query_block=4)
        want = ref_ranks(exact, targets, ex)
        assert len(got) == len(want) == 6
        for g, w in zip(got, want):
            assert g.dtype == np.int64
            np.testing.assert_array_equal(g, w)


def test_rank_targets_pessimistic_ties_by_hand():
    X = np.array([[1.0], [2.0], [2.0], [3.0], [2.0], [np.nan]], np.float32)
    q = np.array([1.0], np.float32)
    # scores 1 2 2 3 2 NaN; targets 2 and 4 tie at 2 with non-target 1
    np.testing.assert_array_equal(scoring.rank_targets(q, X, [4, 2]), [4, 3])
    np.testing.assert_array_equal(scoring.rank_targets(q, X, [2], exclude=[1, 3]), [2])
    np.testing.assert_array_equal(scoring.rank_targets(q, X, [5]), [6])  # NaN: below everything
    np.testing.assert_array_equal(scoring.rank_targets(q, X, [0, 5]), [5, 6])
    (r,) = scoring.rank_targets(q[None], X, [[3]])
    np.testing.assert_array_equal(r, [1])


@SETTINGS
@given(data=st.data(), B=st.integers(1, 5), N=st.integers(1, 70), d=st.integers(1, 20), item_tile=st.integers(1, 33))
def test_rank_targets_property(data, B, N, d, item_tile):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    X, Q = ints(rng, N, d, lo=-1, hi=2), ints(rng, B, d, lo=-1, hi=2)
    targets = [rng.integers(0, N, rng.integers(0, 5)) for _ in range(B)]
    exclude = None
    if data.draw(st.booleans()):
        exclude = [np.setdiff1d(rng.integers(0, N, rng.integers(0, N + 1)), t) for t in targets]
    kernel = data.draw(st.sampled_from(KERNELS))
    got = scoring.rank_targets(Q, X, targets, exclude=exclude, kernel=kernel, item_tile=item_tile)
    for g, w in zip(got, ref_ranks(kernel_scores(Q, X), targets, exclude)):
        np.testing.assert_array_equal(g, w)


def test_rank_targets_consistent_with_topk():
    rng = np.random.default_rng(10)
    X, Q = rand(rng, 2000, 16), rand(rng, 4, 16)
    s, i = scoring.topk(Q, X, 50)
    ranks = scoring.rank_targets(Q, X, [row[[0, 9, 49]] for row in i])
    for r in ranks:  # continuous scores: no ties, ranks are positions
        np.testing.assert_array_equal(r, [1, 10, 50])


# ------------------------------------------------------------------ score offsets


def dense_offsets(B, N, ids, vals, exclude=None):
    """[B, N] float32 offsets from per-query (ids, values), duplicates summed."""
    O = np.zeros((B, N), np.float64)
    for b in range(B):
        np.add.at(O[b], np.asarray(ids[b], np.int64), np.asarray(vals[b], np.float64))
    return O.astype(np.float32)


def random_offsets(rng, B, N, lo=-3, hi=4):
    """Per query a few ids (duplicates included) with integer offsets (0 included)."""
    ids = [rng.integers(0, N, rng.integers(0, min(N, 6) + 1)) for _ in range(B)]
    vals = [rng.integers(lo, hi, len(i)).astype(np.float32) for i in ids]
    return ids, vals


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("B, N, d", [(1, 1, 1), (3, 40, 5), (6, 200, 17), (2, 1000, 8)])
def test_topk_with_offsets_matches_bruteforce(kernel, B, N, d):
    rng = np.random.default_rng(B * 7 + N)
    X, Q = ints(rng, N, d), ints(rng, B, d)
    ids, vals = random_offsets(rng, B, N)
    ids[0] = np.concatenate([ids[0], [0, 0]])  # a duplicate that sums
    vals[0] = np.concatenate([vals[0], [5.0, -2.0]]).astype(np.float32)
    exclude = [np.setdiff1d(rng.integers(0, N, N // 5), []) for _ in range(B)]
    S = kernel_scores(Q, X)
    for ex in (None, exclude):
        keep_ex = ex if ex is not None else [[]] * B
        # an excluded item is not ranked, whatever its offset
        want = ref_topk(S + dense_offsets(B, N, ids, vals), min(N, 10), keep_ex)
        for tile in (None, 16):
            got = scoring.topk(Q, X, min(N, 10), exclude=ex, offsets=(ids, vals), kernel=kernel, item_tile=tile)
            assert_same(got, want)


def test_topk_offsets_lift_an_item_the_scan_would_drop():
    # Item 7 scores lowest on its own; its offset puts it first. Only the post-scan merge finds it.
    X = np.arange(20, dtype=np.float32)[:, None]
    s, i = scoring.topk(np.ones(1, np.float32), X, 3, offsets=([7, 19], [100.0, -50.0]))
    np.testing.assert_array_equal(i, [7, 18, 17])
    np.testing.assert_array_equal(s, [107.0, 18.0, 17.0])


def test_topk_offsets_as_padded_2d_arrays_and_tensors():
    rng = np.random.default_rng(31)
    X, Q = ints(rng, 50, 4), ints(rng, 3, 4)
    ids = np.array([[1, 2, 0], [3, 3, 0], [0, 0, 0]])
    vals = np.array([[4.0, -1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], np.float32)  # zeros are padding
    want = ref_topk(kernel_scores(Q, X) + dense_offsets(3, 50, ids, vals), 8)
    assert_same(scoring.topk(Q, X, 8, offsets=(ids, vals)), want)
    assert_same(scoring.topk(Q, X, 8, offsets=(torch.from_numpy(ids), torch.from_numpy(vals))), want)
    assert_same(scoring.topk(Q, X, 8, offsets=(list(ids), [list(v) for v in vals])), want)


@pytest.mark.parametrize("kernel", KERNELS)
def test_topk_approx_with_offsets_scores_offset_items_exactly(kernel):
    rng = np.random.default_rng(32)
    X, Q = rand(rng, 600, 24), rand(rng, 5, 24)
    ids, vals = random_offsets(rng, 5, 600)
    S = kernel_scores(Q, X) + dense_offsets(5, 600, ids, vals)
    xb = scoring.to_bf16(X)
    # every candidate kept: the answer is the exact one
    assert_same(scoring.topk(Q, X, 10, approx=xb, approx_factor=60, offsets=(ids, vals), kernel=kernel),
                ref_topk(S, 10))
    s, i = scoring.topk(Q, X, 10, approx=xb, approx_factor=2, offsets=(ids, vals), kernel=kernel)
    np.testing.assert_array_equal(s, np.take_along_axis(S, i, 1))  # returned scores are exact, offsets included


@pytest.mark.parametrize("kernel", KERNELS)
def test_rank_targets_with_offsets_matches_reference(kernel):
    rng = np.random.default_rng(33)
    N, B = 120, 6
    X, Q = ints(rng, N, 5), ints(rng, B, 5)
    X[[4, 77]] = np.nan
    targets = [rng.integers(0, N, rng.integers(1, 6)) for _ in range(B)]
    targets[1] = np.array([4, 77, 3, 3])
    ids, vals = random_offsets(rng, B, N)
    ids[2] = np.concatenate([ids[2], targets[2]])  # targets with offsets of their own
    vals[2] = np.concatenate([vals[2], np.full(len(targets[2]), 2.0, np.float32)])
    exclude = [np.setdiff1d(rng.integers(0, N, 20), t) for t in targets]
    S = kernel_scores(Q, X) + dense_offsets(B, N, ids, vals)
    for ex in (None, exclude):
        got = scoring.rank_targets(Q, X, targets, exclude=ex, offsets=(ids, vals), kernel=kernel, item_tile=16)
        for g, w in zip(got, ref_ranks(S, targets, ex)):
            np.testing.assert_array_equal(g, w)


def test_rank_targets_offsets_by_hand():
    X = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    q = np.array([1.0], np.float32)
    # scores 1 2 3 4; item 0 gains 5 -> 6 (first); target 2 loses 1 -> 2, ties with item 1 (pessimistic)
    np.testing.assert_array_equal(scoring.rank_targets(q, X, [2], offsets=([0, 2], [5.0, -1.0])), [4])
    np.testing.assert_array_equal(scoring.rank_targets(q, X, [3], offsets=([0], [5.0])), [2])
    # an excluded item's offset is ignored
    np.testing.assert_array_equal(scoring.rank_targets(q, X, [3], exclude=[0], offsets=([0], [5.0])), [1])


@SETTINGS
@given(data=st.data(), B=st.integers(1, 4), N=st.integers(1, 60), d=st.integers(1, 12), item_tile=st.integers(1, 33))
def test_offsets_property(data, B, N, d, item_tile):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    X, Q = ints(rng, N, d, lo=-1, hi=2), ints(rng, B, d, lo=-1, hi=2)
    ids, vals = random_offsets(rng, B, N, lo=-2, hi=3)
    targets = [rng.integers(0, N, rng.integers(0, 4)) for _ in range(B)]
    exclude = None
    if data.draw(st.booleans()):
        exclude = [np.setdiff1d(rng.integers(0, N, rng.integers(0, N + 1)), t) for t in targets]
    kernel = data.draw(st.sampled_from(KERNELS))
    S = kernel_scores(Q, X) + dense_offsets(B, N, ids, vals)
    got = scoring.rank_targets(Q, X, targets, exclude=exclude, offsets=(ids, vals), kernel=kernel, item_tile=item_tile)
    for g, w in zip(got, ref_ranks(S, targets, exclude)):
        np.testing.assert_array_equal(g, w)
    k = data.draw(st.integers(1, N))
    assert_same(scoring.topk(Q, X, k, exclude=exclude, offsets=(ids, vals), kernel=kernel, item_tile=item_tile),
                ref_topk(S, k, exclude))


# ------------------------------------------------------------------ bad input


X5 = np.zeros((5, 3), np.float32)
Q2 = np.zeros((2, 3), np.float32)

BAD = [
    (lambda: scoring.topk(np.zeros((2, 2, 3)), X5, 1), ValueError, r"queries must be 2-D .* shape \(2, 2, 3\)"),
    (lambda: scoring.topk(Q2, np.zeros(3), 1), ValueError, r"items must be 2-D \[N, d\], got shape \(3,\)"),
    (lambda: scoring.topk(Q2, np.zeros((5, 4)), 1), ValueError, r"queries have d=3 but items have d=4"),
    (lambda: scoring.topk(Q2, np.zeros((0, 3)), 1), ValueError, r"items is empty"),
    (lambda: scoring.topk(Q2, np.zeros((5, 0)), 1), ValueError, r"items is empty"),
    (lambda: scoring.topk(Q2, X5, 0), ValueError, r"k must be >= 1, got 0"),
    (lambda: scoring.topk(Q2, X5, 6), ValueError, r"k=6 is larger than the number of items N=5"),
    (lambda: scoring.topk(Q2, X5, 2.0), ValueError, r"k must be an integer"),
    (lambda: scoring.topk(Q2, X5, True), ValueError, r"k must be an integer"),
    (lambda: scoring.topk(Q2.astype(object), X5, 1), ValueError, r"queries must be numeric, got dtype object"),
    (lambda: scoring.topk(Q2, X5.astype(np.complex64), 1), ValueError, r"items must be numeric, got dtype complex64"),
    (lambda: scoring.topk([["a", "b", "c"]], X5, 1), ValueError, r"queries must be numeric, got dtype <U1"),
    (lambda: scoring.topk(torch.zeros(2, 3, dtype=torch.complex64), X5, 1), ValueError, r"queries must be real"),
    (lambda: scoring.topk([[1, 2], [3]], X5, 1), ValueError, r"queries is not an array"),
    (lambda: scoring.topk(Q2, X5, 1, exclude=[[1]]), ValueError, r"exclude has 1 entries but queries has B=2"),
    (lambda: scoring.topk(Q2, X5, 1, exclude=[[1], [5]]), IndexError, r"exclude\[1\] holds id 5, outside \[0, 5\)"),
    (lambda: scoring.topk(Q2, X5, 1, exclude=[[-1], []]), IndexError, r"exclude\[0\] holds id -1, outside \[0, 5\)"),
    (lambda: scoring.topk(Q2, X5, 1, exclude=[[1.0], []]), ValueError, r"exclude\[0\] must hold integer item ids, got dtype float64"),
    (lambda: scoring.topk(Q2, X5, 1, exclude=[[True], []]), ValueError, r"exclude\[0\] must hold integer item ids, got dtype bool"),
    (lambda: scoring.topk(Q2, X5, 1, exclude=[[[1]], []]), ValueError, r"exclude\[0\] must be a 1-D array"),
    (lambda: scoring.topk(Q2, X5, 1, exclude=5), ValueError, r"exclude must be a sequence of B=2 id arrays"),
    (lambda: scoring.topk(Q2[0], X5, 1, exclude=[[1, 2], [3, 4]]), ValueError, r"single 1-D query must be one 1-D id array"),
    (lambda: scoring.topk(Q2, X5, 1, num_threads=0), ValueError, r"num_threads must be >= 1, got 0"),
    (lambda: scoring.topk(Q2, X5, 1, item_tile=0), ValueError, r"item_tile must be >= 1"),
    (lambda: scoring.topk(Q2, X5, 1, approx=np.zeros((5, 3), np.float32)), ValueError, r"approx must be uint16 \(bfloat16 bits, see to_bf16\), got dtype float32"),
    (lambda: scoring.topk(Q2, X5, 1, approx=np.zeros((5, 4), np.uint16)), ValueError, r"approx has shape \(5, 4\) but items have shape \(5, 3\)"),
    (lambda: scoring.topk(Q2, X5, 1, approx=np.zeros((4, 3), np.uint16)), ValueError, r"approx has shape \(4, 3\)"),
    (lambda: scoring.topk(Q2, X5, 1, approx=np.zeros(15, np.uint16)), ValueError, r"approx has shape \(15,\)"),
    (lambda: scoring.topk(Q2, X5, 1, approx=[[0, 0, 0]] * 5), ValueError, r"approx must be a uint16 array from to_bf16"),
    (lambda: scoring.topk(Q2, X5, 1, approx=torch.zeros(5, 3)), ValueError, r"approx must be the bfloat16 copy of items \(to_bf16\), got dtype torch.float32"),
    (lambda: scoring.topk(Q2, X5, 1, approx=scoring.to_bf16(X5), approx_factor=0), ValueError, r"approx_factor must be >= 1, got 0"),
    (lambda: scoring.topk(Q2, X5, 1, approx=scoring.to_bf16(X5), approx_factor=2.5), ValueError, r"approx_factor must be an integer"),
    (lambda: scoring.to_bf16(np.zeros(3, np.float32)), ValueError, r"items must be 2-D"),
    (lambda: scoring.score_candidates(np.zeros(4, np.float32), X5, np.array([0])), ValueError, r"query has d=4 but items have d=3"),
    (lambda: scoring.score_candidates(np.zeros((1, 3), np.float32), X5, np.array([0])), ValueError, r"query must be 1-D \[d\], got shape \(1, 3\)"),
    (lambda: scoring.score_candidates(np.zeros(3, np.float32), X5, np.array([0, 5])), IndexError, r"candidate_ids holds id 5, outside \[0, 5\)"),
    (lambda: scoring.score_candidates(np.zeros(3, np.float32), X5, np.array([-3, 0])), IndexError, r"candidate_ids holds id -3"),
    (lambda: scoring.score_candidates(np.zeros(3, np.float32), X5, np.array([2**63 + 5], np.uint64)), IndexError, r"candidate_ids holds id"),
    (lambda: scoring.score_candidates(np.zeros(3, np.float32), X5, np.array([0.0])), ValueError, r"candidate_ids must hold integer item ids"),
    (lambda: scoring.score_candidates(np.zeros(3, np.float32), X5, np.array([[0]])), ValueError, r"candidate_ids must be a 1-D array"),
    (lambda: scoring.score_candidates(np.zeros(3, np.float32), np.zeros((0, 3), np.float32), np.array([0])), ValueError, r"items is empty"),
    (lambda: scoring.rank_targets(Q2, X5, [[0]]), ValueError, r"targets has 1 entries but queries has B=2"),
    (lambda: scoring.rank_targets(Q2, X5, [[0], [9]]), IndexError, r"targets\[1\] holds id 9, outside \[0, 5\)"),
    (lambda: scoring.rank_targets(Q2, X5, [[0], [0.5]]), ValueError, r"targets\[1\] must hold integer item ids"),
    (lambda: scoring.rank_targets(Q2, X5, [[0], [1]], exclude=[[2], [1]]), ValueError, r"targets\[1\] item 1 is also in exclude\[1\]"),
    (lambda: scoring.rank_targets(Q2, X5, [[0], [1]], exclude=[[2]]), ValueError, r"exclude has 1 entries but queries has B=2"),
    (lambda: scoring.rank_targets(Q2, np.zeros((5, 2)), [[0], [1]]), ValueError, r"queries have d=3 but items have d=2"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=[[1], [2]]), ValueError, r"offsets must be a tuple \(ids, values\)"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=([[1], [2]], [[1.0]])), ValueError, r"offsets values has 1 entries but queries has B=2"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=([[1], [2]], [[1.0], [1.0, 2.0]])), ValueError, r"offsets values\[1\] must be a 1-D array of 1 values"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=([[1], [7]], [[1.0], [1.0]])), IndexError, r"offsets ids\[1\] holds id 7, outside \[0, 5\)"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=([[1], [2]], [[np.nan], [1.0]])), ValueError, r"offsets values\[0\] holds nan, which is not a finite float32"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=([[1], [2]], [[1e300], [1.0]])), ValueError, r"offsets values\[0\] holds 1e\+300"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=([[1], [2]], [["a"], [1.0]])), ValueError, r"offsets values\[0\] must be numeric"),
    (lambda: scoring.topk(Q2, X5, 1, offsets=([[1, 1], []], [[3e38, 3e38], []])), ValueError, r"summed values of a duplicated id"),
    (lambda: scoring.rank_targets(Q2, X5, [[0], [1]], offsets=([[0.5], []], [[1.0], []])), ValueError, r"offsets ids\[0\] must hold integer item ids"),
    # a NaN or inf query ranked k items with NaN scores; a float64 beyond float32 became inf
    (lambda: scoring.topk(np.array([1.0, np.nan, 0.0]), X5, 1), ValueError,
     r"queries\[1\] is nan, not a finite float32"),
    (lambda: scoring.topk(np.array([[1.0, 0.0, 0.0], [0.0, -np.inf, 0.0]]), X5, 1), ValueError,
     r"queries\[1, 1\] is -inf, not a finite float32"),
    (lambda: scoring.topk(np.array([1e300, 0.0, 0.0]), X5, 1), ValueError, r"queries\[0\] is 1e\+300, not a finite"),
    (lambda: scoring.topk(np.ones(3), np.full((5, 3), 1e300), 1), ValueError, r"items\[\d+, \d+\] is .*not a finite"),
    (lambda: scoring.score_candidates(np.array([np.nan, 0, 0], np.float32), X5, np.arange(2)), ValueError,
     r"query\[0\] is nan, not a finite float32"),
]


@pytest.mark.parametrize("call, exc, match", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_gpu_tensor_rejected_without_touching_it():
    meta = torch.zeros(2, 3, device="meta")  # stands in for a CUDA tensor on CPU-only CI
    with pytest.raises(ValueError, match=r"queries must be on the CPU, got a tensor on meta"):
        scoring.topk(meta, X5, 1)


def test_core_rejects_wrong_dtype_instead_of_copying():
    # The private core must never write into a silent temporary copy.
    X = np.zeros((4, 2), np.float32)
    out_s, out_i = np.empty((1, 1), np.float64), np.empty((1, 1), np.int64)
    off, ids = np.zeros(2, np.int64), np.zeros(0, np.int64)
    vals = np.zeros(0, np.float32)
    with pytest.raises(TypeError):
        _C.topk(X[:1], X, 1, off, ids, off, ids, vals, out_s, out_i, 1)


def test_linear_scores_equal_the_python_model_and_refuse_bad_rows():
    import torch

    from rankers.model.linear import SparseLinear
    from rankers.retrieval.core import linear_scores

    rng = np.random.default_rng(0)
    R, F = 500, 300
    nnz_per_row = rng.integers(0, 40, R)
    offsets = np.r_[0, np.cumsum(nnz_per_row)]
    index = rng.integers(0, F, int(offsets[-1]))
    value = rng.random(int(offsets[-1])).astype(np.float32)
    m = SparseLinear(F)
    with torch.no_grad():
        m.weight.copy_(torch.from_numpy(np.where(rng.random(F) < 0.1, rng.normal(size=F), 0.0)))
    row = torch.from_numpy(np.repeat(np.arange(R), nnz_per_row))
    expected = m(torch.from_numpy(index), torch.from_numpy(value), row, R).detach().numpy()
    np.testing.assert_allclose(linear_scores(offsets, index, value, m.weight), expected, rtol=1e-5, atol=1e-6)
    assert linear_scores([0], [], [], np.ones(3)).shape == (0,)
    w = np.ones(4, np.float32)
    for args, match in [(([0, 2, 1], [0, 1], [1, 1], w), "never decrease"),
                        (([1, 2], [0, 1], [1, 1], w), "start at 0"),
                        (([0, 2], [0, 4], [1, 1], w), r"index holds id 4, outside \[0, 4\)"),
                        (([0, 2], [0, 1], [1], w), "value has 1 entries, index 2"),
                        (([0, 2], [0, 1], [1, float("nan")], w), r"value\[1\] is nan"),
                        (([0, 1], [0], [1], [1.0, float("inf")]), r"weight\[1\] is inf")]:
        with pytest.raises((ValueError, IndexError), match=match):
            linear_scores(*args)
