"""Exact inner-product retrieval: top-k, candidate re-scoring and target ranks.

Front of the compiled core ``rankers._C`` (``csrc/``). This module checks and
converts every input, turns id lists into sorted unique CSR and allocates the
outputs; the core trusts what it is given.

Per-query sparse score offsets (``offsets=(ids, values)``) add a value to the score
of a few items of each query (a model term that is not an inner product, such as
a score for items already in the user's history): ``topk`` and ``rank_targets``
rank by ``<q, x> + offset`` without a dense [B, N] matrix or a widened item table.

Scores are float32 inner products accumulated in one fixed order
(``s = fma(q[j], x[j], s)`` for ``j = 0..d-1``), so every kernel, tiling and
thread count returns bit-identical scores, and ``score_candidates`` returns
exactly the scores ``topk`` ranks by. Results are ordered by score descending,
NaN below every number, ties by lower item index.

``kernel``, ``item_tile`` and ``query_block`` are test and benchmark knobs; they
never change results. ``RANKERS_KERNEL=scalar|avx2|avx512`` forces the default kernel.

Optional reduced precision (off by default): ``topk(..., approx=to_bf16(items))``
scans a bfloat16 copy of the items (half the memory traffic), keeps
``k * approx_factor`` candidates per query and re-scores them exactly in float32.
Returned scores are then still the exact float32 scores of the returned items;
only which items are found (recall) is approximate.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rankers import _C

__all__ = ["topk", "to_bf16", "score_candidates", "rank_targets", "kernel_name", "available_kernels"]

_F32 = np.dtype(np.float32)
_U16 = np.dtype(np.uint16)
_I64 = np.dtype(np.int64)
_NUMERIC_KINDS = "biuf"
_INT_KINDS = "iu"


def kernel_name() -> str:
    """Kernel used by default in this process (``RANKERS_KERNEL`` or the best supported)."""
    return _C.kernel_name()


def available_kernels() -> list[str]:
    """Kernels this build can run on this CPU, slowest first."""
    return _C.available_kernels()


# ------------------------------------------------------------------ conversion


def _numpy(x: Any, name: str) -> np.ndarray:
    """Any array-like (torch CPU tensors without a copy) as an ndarray."""
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise ValueError(f"{name} must be on the CPU, got a tensor on {x.device}")
        if x.is_complex():
            raise ValueError(f"{name} must be real, got dtype {x.dtype}")
        x = x.detach()
        if x.dtype in (torch.bfloat16,):  # no NumPy equivalent
            x = x.to(torch.float32)
        return x.numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} is not an array: {e}") from None


def _floats(x: Any, name: str, check: str = "converted") -> np.ndarray:
    """``x`` as C-contiguous float32. ``check``: "always" refuses a value that is not a finite
    float32 (queries: a NaN or inf query ranks nothing); "converted" only where ``x`` was
    converted from another dtype (a float64 1e300 would become inf silently), the check
    riding on the pass the conversion makes anyway (item matrices already float32 are not
    scanned: their NaN scores rank after every number)."""
    a = _numpy(x, name)
    if a.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(a, dtype=_F32)
    if check == "always" or (check == "converted" and a.dtype != _F32):
        bad = ~np.isfinite(out)
        if bad.any():
            at = np.unravel_index(int(np.argmax(bad)), out.shape)
            raise ValueError(f"{name}{[int(i) for i in at]} is {a[at].item()!r}, not a finite float32 "
                             f"(|x| <= {float(np.finfo(np.float32).max):.4g}, no NaN or inf)")
    return out


def _items(items: Any) -> np.ndarray:
    x = _floats(items, "items")
    if x.ndim != 2:
        raise ValueError(f"items must be 2-D [N, d], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"items is empty (shape {x.shape})")
    return x


def _queries(queries: Any, d: int) -> tuple[np.ndarray, bool]:
    """-> (queries [B, d], whether a single 1-D query was given)."""
    q = _floats(queries, "queries", check="always")
    single = q.ndim == 1
    if single:
        q = q[None, :]
    if q.ndim != 2:
        raise ValueError(f"queries must be 2-D [B, d] or 1-D [d], got shape {q.shape}")
    if q.shape[1] != d:
        raise ValueError(f"queries have d={q.shape[1]} but items have d={d}")
    return q, single


def _count(x: Any, name: str, low: int = 1) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if int(x) < low:
        raise ValueError(f"{name} must be >= {low}, got {int(x)}")
    return int(x)


def _threads(num_threads: Any) -> int:
    if num_threads is None:
        return torch.get_num_threads()
    return _count(num_threads, "num_threads")


def _knobs(kernel: str | None, item_tile: int | None, query_block: int | None) -> dict:
    if kernel is not None and not isinstance(kernel, str):
        raise ValueError(f"kernel must be a string, got {kernel!r}")
    return {
        "kernel": kernel or "",
        "item_tile": 0 if item_tile is None else _count(item_tile, "item_tile"),
        "query_block": 0 if query_block is None else _count(query_block, "query_block"),
    }


def _id_array(x: Any, name: str) -> np.ndarray:
    """One 1-D integer id array as int64 (range checked by the caller)."""
    if x is None:
        return np.zeros(0, _I64)
    a = _numpy(x, name)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of item ids, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, _I64)
    if a.dtype.kind not in _INT_KINDS:
        raise ValueError(f"{name} must hold integer item ids, got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.max() > np.iinfo(np.int64).max:
        raise IndexError(f"{name} holds id {a.max()}, outside [0, N)")
    return a.astype(_I64, copy=False)


def _check_range(ids: np.ndarray, n: int, name: str, lens: np.ndarray | None = None) -> None:
    bad = np.flatnonzero((ids < 0) | (ids >= n))
    if bad.size:
        where = name
        if lens is not None:
            where = f"{name}[{int(np.searchsorted(np.cumsum(lens), bad[0], side='right'))}]"
        raise IndexError(f"{where} holds id {int(ids[bad[0]])}, outside [0, {n}) (items has N={n} rows)")


def _per_query(seqs: Any, B: int, single: bool, name: str) -> list[np.ndarray]:
    """A sequence of B id arrays (for a single 1-D query: one id array) as int64 arrays."""
    if single:
        a = _numpy(seqs, name)
        if a.ndim == 1 or a.size == 0:
            return [_id_array(a.reshape(-1), name)]
        if a.ndim == 2 and a.shape[0] == 1:
            return [_id_array(a[0], name)]
        raise ValueError(f"{name} for a single 1-D query must be one 1-D id array, got shape {a.shape}")
    if isinstance(seqs, (str, bytes)) or not isinstance(seqs, (Sequence, np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a sequence of B={B} id arrays, got {type(seqs).__name__}")
    if len(seqs) != B:
        raise ValueError(f"{name} has {len(seqs)} entries but queries has B={B} rows")
    return [_id_array(x, f"{name}[{r}]") for r, x in enumerate(seqs)]


def _csr(rows: list[np.ndarray], n: int, name: str, inverse: bool = False):
    """Per-query id arrays -> (offsets [B+1], ids sorted unique per query, their
    (query * N + id) keys, per-query input lengths, inverse map or None).

    One vectorised sort of (query, id) keys instead of B small ones.
    """
    B = len(rows)
    lens = np.fromiter((a.size for a in rows), dtype=_I64, count=B)
    flat = np.concatenate(rows) if B else np.zeros(0, _I64)
    _check_range(flat, n, name, lens)
    if B * n >= 2**63:
        raise ValueError(f"B={B} x N={n} is too large for {name}")
    keys = np.repeat(np.arange(B, dtype=_I64), lens) * n + flat
    if inverse:
        uniq, inv = np.unique(keys, return_inverse=True)
    else:
        # one sort: NumPy 2.3+'s np.unique without an inverse hashes, ~100x slower on large arrays
        uniq, inv = np.sort(keys), None
        uniq = uniq[np.concatenate([[True], uniq[1:] != uniq[:-1]])] if len(uniq) else uniq
    qid = uniq // n
    offsets = np.zeros(B + 1, _I64)
    np.cumsum(np.bincount(qid, minlength=B), out=offsets[1:])
    ids = np.ascontiguousarray(uniq - qid * n)
    return offsets, ids, uniq, lens, inv


def _no_exclusions(B: int):
    return np.zeros(B + 1, _I64), np.zeros(0, _I64)


def _value_array(x: Any, name: str, size: int) -> np.ndarray:
    """One 1-D array of ``size`` offset values as float64 (finite in float32)."""
    a = _numpy(x, name)
    if a.ndim != 1 or a.size != size:
        raise ValueError(f"{name} must be a 1-D array of {size} values (one per id), got shape {a.shape}")
    if a.size and a.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    v = a.astype(np.float64, copy=False)
    with np.errstate(over="ignore"):  # overflow is what this checks for
        bad = ~np.isfinite(v.astype(_F32))
    if bad.any():
        raise ValueError(f"{name} holds {float(v[np.argmax(bad)])!r}, which is not a finite float32")
    return v


def _offsets(offsets: Any, B: int, n: int, single: bool, ex_keys: np.ndarray):
    """``offsets=(ids, values)`` -> CSR (off [B+1], ids sorted unique per query, float32
    values): zero values dropped, duplicates summed, excluded ids dropped (the item is
    not ranked at all)."""
    if offsets is None:
        return np.zeros(B + 1, _I64), np.zeros(0, _I64), np.zeros(0, _F32)
    if not isinstance(offsets, tuple) or len(offsets) != 2:
        raise ValueError("offsets must be a tuple (ids, values): per query an id array and a value array")
    ids = _per_query(offsets[0], B, single, "offsets ids")
    vals_in = _per_query_values(offsets[1], B, single)
    vals = [_value_array(v, f"offsets values[{r}]", ids[r].size) for r, v in enumerate(vals_in)]
    lens = np.fromiter((a.size for a in ids), dtype=_I64, count=B)
    flat = np.concatenate(ids) if B else np.zeros(0, _I64)
    _check_range(flat, n, "offsets ids", lens)
    keys = np.repeat(np.arange(B, dtype=_I64), lens) * n + flat
    v = np.concatenate(vals) if B else np.zeros(0)
    keep = (v != 0) & ~np.isin(keys, ex_keys)
    keys, v = keys[keep], v[keep]
    uniq, inv = np.unique(keys, return_inverse=True)
    total = np.zeros(uniq.size)
    np.add.at(total, inv.reshape(-1), v)
    with np.errstate(over="ignore"):
        total = total.astype(_F32)
    if not np.isfinite(total).all():
        raise ValueError("offsets: the summed values of a duplicated id are not a finite float32")
    qid = uniq // n
    off = np.zeros(B + 1, _I64)
    np.cumsum(np.bincount(qid, minlength=B), out=off[1:])
    return off, np.ascontiguousarray(uniq - qid * n), np.ascontiguousarray(total)


def _per_query_values(seqs: Any, B: int, single: bool) -> list:
    """B value arrays (for a single 1-D query: one array)."""
    if single:
        a = _numpy(seqs, "offsets values")
        return [a[0] if a.ndim == 2 and a.shape[0] == 1 else a.reshape(-1)]
    if isinstance(seqs, (str, bytes)) or not isinstance(seqs, (Sequence, np.ndarray, torch.Tensor)):
        raise ValueError(f"offsets values must be a sequence of B={B} arrays, got {type(seqs).__name__}")
    if len(seqs) != B:
        raise ValueError(f"offsets values has {len(seqs)} entries but queries has B={B} rows")
    return list(seqs)


def _approx(approx: Any, x: np.ndarray) -> np.ndarray:
    """The bfloat16 copy passed as ``approx``: uint16 [N, d] matching items."""
    if isinstance(approx, torch.Tensor):
        if approx.dtype != torch.bfloat16:
            raise ValueError(f"approx must be the bfloat16 copy of items (to_bf16), got dtype {approx.dtype}")
        if approx.device.type != "cpu":
            raise ValueError(f"approx must be on the CPU, got a tensor on {approx.device}")
        a = approx.detach().contiguous().view(torch.int16).numpy().view(_U16)
    elif isinstance(approx, np.ndarray):
        a = approx
    else:
        raise ValueError(f"approx must be a uint16 array from to_bf16(items), got {type(approx).__name__}")
    if a.dtype != _U16:
        raise ValueError(f"approx must be uint16 (bfloat16 bits, see to_bf16), got dtype {a.dtype}")
    if a.shape != x.shape:
        raise ValueError(f"approx has shape {a.shape} but items have shape {x.shape}")
    return np.ascontiguousarray(a)


# ------------------------------------------------------------------ API


def to_bf16(items: Any) -> np.ndarray:
    """bfloat16 copy of ``items`` for ``topk(..., approx=...)``: uint16 [N, d] holding
    the upper 16 bits of each float32, rounded to nearest even (NaN stays NaN).

    Make it once per item matrix and keep it: it is half the size of the float32 items.
    """
    x = _items(items)
    out = np.empty(x.shape, _U16)
    _C.to_bf16(x, out)
    return out


def topk(
    queries: Any,
    items: Any,
    k: int,
    exclude: Sequence[Any] | None = None,
    num_threads: int | None = None,
    *,
    kernel: str | None = None,
    item_tile: int | None = None,
    query_block: int | None = None,
    approx: Any = None,
    approx_factor: int = 4,
    offsets: tuple[Any, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items by inner product for each query (exact unless ``approx`` is given).

    Args:
        queries: [B, d] (or [d] for one query), any real dtype / NumPy / torch CPU.
        items: [N, d].
        k: 1 <= k <= N.
        exclude: None, or B integer arrays of item ids to leave out per query
            (any order, duplicates fine; for a 1-D query: one id array).
        num_threads: default ``torch.get_num_threads()``; results do not depend on it.
        approx: None (exact), or ``to_bf16(items)``: scan that bfloat16 copy for the
            best ``min(k * approx_factor, N)`` candidates per query, re-score them
            exactly from ``items`` and return the best k. Scores stay the exact
            float32 scores of the returned items; recall may be below 1. With
            ``k * approx_factor >= N`` the result equals the exact one.
        approx_factor: integer >= 1, candidates kept per result slot.
        offsets: None, or (ids, values): per query an integer id array and a value
            array of the same length ([B, H] arrays or B sequences; for a 1-D query one
            of each). Those items score ``<q, x> + value`` (float32 addition); duplicate
            ids add up, zero values and excluded ids are ignored. Offset items are
            always scored exactly, also with ``approx``.

    Returns:
        (scores float32 [B, k], indices int64 [B, k]), best first; ties go to the
        lower index, NaN scores rank after every number. Where exclusions leave
        fewer than k items the remaining slots are (-inf, -1). 1-D for a 1-D query.
    """
    x = _items(items)
    n, d = x.shape
    q, single = _queries(queries, d)
    B = q.shape[0]
    k = _count(k, "k")
    if k > n:
        raise ValueError(f"k={k} is larger than the number of items N={n}")
    threads = _threads(num_threads)
    knobs = _knobs(kernel, item_tile, query_block)
    factor = _count(approx_factor, "approx_factor")
    xb = None if approx is None else _approx(approx, x)
    if exclude is None:
        ex_off, ex_ids = _no_exclusions(B)
        ex_keys = ex_ids
    else:
        ex_off, ex_ids, ex_keys, *_ = _csr(_per_query(exclude, B, single, "exclude"), n, "exclude")
    of = _offsets(offsets, B, n, single, ex_keys)
    scores = np.empty((B, k), _F32)
    indices = np.empty((B, k), _I64)
    if xb is None:
        _C.topk(q, x, k, ex_off, ex_ids, *of, scores, indices, threads, **knobs)
    else:
        cand = min(k * factor, n)
        _C.topk_bf16(q, x, xb, k, cand, ex_off, ex_ids, *of, scores, indices, threads, **knobs)
    if single:
        return scores[0], indices[0]
    return scores, indices


def score_candidates(query: Any, items: Any, candidate_ids: Any, *, kernel: str | None = None) -> np.ndarray:
    """Scores of an explicit candidate list: float32 [C], ``<query, items[candidate_ids[c]]>``.

    query [d], items [N, d], candidate_ids integer [C] in [0, N). Bit-identical to
    the scores ``topk`` returns. Already float32/int64 C-contiguous NumPy inputs skip
    all conversion (this is meant to be called per request).
    """
    if (
        type(query) is np.ndarray
        and type(items) is np.ndarray
        and type(candidate_ids) is np.ndarray
        and query.dtype == _F32
        and items.dtype == _F32
        and candidate_ids.dtype == _I64
        and query.ndim == 1
        and items.ndim == 2
        and candidate_ids.ndim == 1
        and query.flags.c_contiguous
        and items.flags.c_contiguous
        and candidate_ids.flags.c_contiguous
        and 0 < query.shape[0] == items.shape[1]
        and items.shape[0] > 0
        and kernel is None
        and bool(np.isfinite(query).all())
        # one reduction checks both ends: negative ids view as huge unsigned values
        and (candidate_ids.size == 0 or int(candidate_ids.view(np.uint64).max()) < items.shape[0])
    ):
        out = np.empty(candidate_ids.shape[0], _F32)
        _C.score_candidates(query, items, candidate_ids, out)
        return out

    x = _items(items)
    n, d = x.shape
    q = _floats(query, "query", check="always")
    if q.ndim != 1:
        raise ValueError(f"query must be 1-D [d], got shape {q.shape}")
    if q.shape[0] != d:
        raise ValueError(f"query has d={q.shape[0]} but items have d={d}")
    ids = _id_array(candidate_ids, "candidate_ids")
    _check_range(ids, n, "candidate_ids")
    ids = np.ascontiguousarray(ids)
    out = np.empty(ids.shape[0], _F32)
    _C.score_candidates(q, x, ids, out, **({"kernel": kernel} if kernel else {}))
    return out


def rank_targets(
    queries: Any,
    items: Any,
    targets: Sequence[Any],
    exclude: Sequence[Any] | None = None,
    num_threads: int | None = None,
    *,
    kernel: str | None = None,
    item_tile: int | None = None,
    query_block: int | None = None,
    offsets: tuple[Any, Any] | None = None,
) -> list[np.ndarray] | np.ndarray:
    """Pessimistic 1-based rank of each target item among the non-excluded items.

    For target t of a query with scores s (with ``offsets`` applied, as in ``topk``;
    targets may have offsets too):
        rank_t = 1 + #{non-excluded non-target j: s_j >= s_t}
                   + #{target t' != t: s_t' > s_t, or s_t' == s_t and t' < t}
    with NaN below every number (NaN == NaN). Excluded items never count; a target
    may not also be excluded (ValueError). Duplicate targets get the same rank.

    Args:
        queries: [B, d] (or [d]); items: [N, d].
        targets: B integer id arrays (for a 1-D query: one id array).
        exclude: None or B integer id arrays.
        offsets: None or (ids, values), as in ``topk``.

    Returns:
        A list of B int64 arrays aligned with ``targets`` (one array for a 1-D query).
    """
    x = _items(items)
    n, d = x.shape
    q, single = _queries(queries, d)
    B = q.shape[0]
    threads = _threads(num_threads)
    knobs = _knobs(kernel, item_tile, query_block)
    tg_off, tg_ids, tg_keys, lens, inverse = _csr(
        _per_query(targets, B, single, "targets"), n, "targets", inverse=True
    )
    if exclude is None:
        ex_off, ex_ids = _no_exclusions(B)
        ex_keys = ex_ids
    else:
        ex_off, ex_ids, ex_keys, *_ = _csr(_per_query(exclude, B, single, "exclude"), n, "exclude")
        clash = np.isin(tg_keys, ex_keys, assume_unique=True)
        if clash.any():
            key = int(tg_keys[np.argmax(clash)])
            raise ValueError(f"targets[{key // n}] item {key % n} is also in exclude[{key // n}]")
    of = _offsets(offsets, B, n, single, ex_keys)
    ranks = np.empty(tg_ids.shape[0], _I64)
    _C.rank_targets(q, x, tg_off, tg_ids, ex_off, ex_ids, *of, ranks, threads, **knobs)
    per_target = ranks[inverse.reshape(-1)]
    out = np.split(per_target, np.cumsum(lens)[:-1]) if B else []
    return out[0] if single else out


def linear_scores(offsets: Any, index: Any, value: Any, weight: Any) -> np.ndarray:
    """Scores of a sparse linear model for candidate rows (the paper's model at serving time):
    out[r] = Σ value * weight[index] over row r's stored features.

    Args:
        offsets: int [R + 1], CSR row starts (0 first, non-decreasing, nnz last).
        index: int [nnz], feature indices in [0, F). value: float [nnz], finite.
        weight: float [F], finite (a sparse model's zeros cost nothing but their reads).
    Returns float32 [R]. Bad input is a ValueError naming the array and the entry.
    """
    w = _floats(weight, "weight", check="always")
    if w.ndim != 1:
        raise ValueError(f"weight must be 1-D [F], got shape {w.shape}")
    off = np.ascontiguousarray(_id_array(offsets, "offsets"))
    idx = np.ascontiguousarray(_id_array(index, "index"))
    val = _floats(value, "value", check="always").reshape(-1)
    if len(off) < 1 or off[0] != 0 or off[-1] != len(idx) or (np.diff(off) < 0).any():
        raise ValueError(f"offsets must start at 0, never decrease and end at len(index) = {len(idx)}; "
                         f"got {len(off)} offsets from {off[0] if len(off) else None} to "
                         f"{off[-1] if len(off) else None}")
    if len(val) != len(idx):
        raise ValueError(f"value has {len(val)} entries, index {len(idx)}")
    _check_range(idx, len(w), "index")
    out = np.empty(len(off) - 1, np.float32)
    _C.linear_scores(off, idx, val, w, out)
    return out