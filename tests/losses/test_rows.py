"""The objective over user rows: the C++ pass against torch's pairs, gradients, threads, bad input."""
import pytest
import torch

from rankers.losses import pairwise_loss
from rankers.losses.rows import row_pairwise_loss


def problem(R=9, K=70, P=40, seed=0, empty_rows=(3,)):
    """Scores of R rows over K columns, P positives (some rows without any), graded columns per row."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(R, K, generator=g) * 2
    rows = [r for r in range(R) if r not in empty_rows]
    pos_row = torch.tensor(rows)[torch.randint(0, len(rows), (P,), generator=g)]  # unsorted
    pos_col = torch.randint(0, K, (P,), generator=g)
    pos_grade = torch.tensor([2.0, 3.0])[torch.randint(0, 2, (P,), generator=g)]
    # each row's user graded some columns (distinct per row); the positives among them
    keys = torch.unique(torch.cat([pos_row * K + pos_col, torch.randint(0, R * K, (3 * R,), generator=g)]))
    gr, gc = keys // K, keys % K
    gg = torch.randint(1, 4, (len(keys),), generator=g).float()
    gg[torch.isin(keys, pos_row * K + pos_col)] = 3.0  # a positive is graded at least as itself
    weight = torch.rand(P, generator=g) + 0.5
    return scores, pos_row, pos_col, pos_grade, (gr, gc, gg), weight


def reference(scores, pos_score, pos_row, pos_grade, graded, weight, **kw):
    """The pairs spelt out: positive p against every column of its row, masked by grade."""
    g = torch.zeros(scores.shape)
    g[graded[0], graded[1]] = graded[2]
    g_neg = g[pos_row]
    mask = (g_neg < pos_grade[:, None]).float()
    return pairwise_loss(pos_score, scores[pos_row], pos_grade, g_neg, mask, weight, **kw)


def assert_same_loss_and_gradients(got, want):
    """got, want: (loss, gradient of the scores, gradient of the positives' scores)."""
    assert got[0] == pytest.approx(want[0], rel=1e-5) and got[0] > 0
    torch.testing.assert_close(got[1], want[1], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got[2], want[2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pair_loss", ["hinge", "logistic"])
@pytest.mark.parametrize("weighting", ["warp", "uniform"])
def test_the_cpp_pass_equals_the_pairs_in_loss_and_gradients(pair_loss, weighting):
    scores, pos_row, pos_col, pos_grade, graded, weight = problem()
    grads = []
    for fn in ("cpp", "ref"):
        s = scores.clone().requires_grad_(True)
        extra = torch.zeros(len(pos_row), requires_grad=True)  # a gradient path into the positives' scores alone
        sp = s[pos_row, pos_col] + extra
        kw = dict(pair_loss=pair_loss, weighting=weighting, n_items=500)
        loss = row_pairwise_loss(s, sp, pos_row, pos_grade, weight, graded, fused=True, **kw) if fn == "cpp" \
            else reference(s, sp, pos_row, pos_grade, graded, weight, **kw)
        loss.backward()
        grads.append((float(loss), s.grad, extra.grad))
    assert_same_loss_and_gradients(*grads)
    assert (grads[0][1][3] == 0).all()  # a row without positives gets no gradient


def test_threads_split_rows_without_changing_the_result():
    # enough pairs for two threads (P * K >= 2^17), a row without positives at the end
    scores, pos_row, pos_col, pos_grade, graded, weight = problem(R=60, K=3000, P=200, empty_rows=(59,))
    out = []
    for threads in (1, 2):
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            s = scores.clone().requires_grad_(True)
            loss = row_pairwise_loss(s, s[pos_row, pos_col], pos_row, pos_grade, weight, graded, pair_loss="hinge",
                                     weighting="warp", n_items=3000, fused=True)
            loss.backward()
        finally:
            torch.set_num_threads(prev)
        out.append((loss.item(), s.grad))
    assert out[0][0] == out[1][0]  # rows are summed in one order whatever the threads
    assert torch.equal(out[0][1], out[1][1])
    assert (out[1][1][59] == 0).all()


def test_warp_rank_loss_over_a_large_catalogue_matches_torch_digamma():
    # ranks above 64 take the harmonic number's asymptotic series
    scores, pos_row, pos_col, pos_grade, graded, weight = problem(R=4, K=20000, P=6, empty_rows=())
    sp = scores[pos_row, pos_col]
    a = row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="hinge", weighting="warp",
                          n_items=200000, fused=True)
    b = reference(scores, sp, pos_row, pos_grade, graded, weight, pair_loss="hinge", weighting="warp",
                  n_items=200000)
    assert float(a) == pytest.approx(float(b), rel=1e-5)


def test_other_losses_take_the_torch_path_and_forcing_the_core_is_refused():
    scores, pos_row, pos_col, pos_grade, graded, weight = problem()
    sp = scores[pos_row, pos_col]
    got = row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="hinge", weighting="lambda")
    want = reference(scores, sp, pos_row, pos_grade, graded, weight, pair_loss="hinge", weighting="lambda")
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ValueError, match="C\\+\\+ pass takes hinge/logistic loss with uniform/warp"):
        row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="softmax", fused=True)


def test_per_positive_negatives_join_the_row_columns():
    scores, pos_row, pos_col, pos_grade, graded, weight = problem()
    sp = scores[pos_row, pos_col]
    drawn = torch.randn(len(sp), 5)
    got = row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="hinge", weighting="warp",
                            extra=(drawn, torch.zeros(len(sp), 5), torch.ones(len(sp), 5)))
    g = torch.zeros(scores.shape)
    g[graded[0], graded[1]] = graded[2]
    mask = torch.cat([torch.ones(len(sp), 5), (g[pos_row] < pos_grade[:, None]).float()], 1)
    want = pairwise_loss(sp, torch.cat([drawn, scores[pos_row]], 1), pos_grade,
                         torch.cat([torch.zeros(len(sp), 5), g[pos_row]], 1), mask, weight, "hinge", "warp")
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_bad_input_is_named_before_the_core_runs():
    scores, pos_row, pos_col, pos_grade, graded, weight = problem()
    sp = scores[pos_row, pos_col]
    bad_row = pos_row.clone()
    bad_row[0] = scores.shape[0]
    with pytest.raises(IndexError, match="pos_row outside"):
        row_pairwise_loss(scores, sp, bad_row, pos_grade, weight, graded, pair_loss="hinge", weighting="warp")
    gr, gc, gg = graded
    with pytest.raises(IndexError, match="graded columns outside"):
        row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, (gr, gc + scores.shape[1], gg),
                          pair_loss="hinge", weighting="warp")
    with pytest.raises(ValueError, match="pos_grade must have shape"):
        row_pairwise_loss(scores, sp, pos_row, pos_grade[:-1], weight, graded)
    with pytest.raises(ValueError, match="graded rows, columns and grades"):
        row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, (gr, gc[:-1], gg))


@pytest.mark.parametrize("pair_loss", ["hinge", "logistic"])
@pytest.mark.parametrize("weighting", ["warp", "uniform"])
def test_integer_column_weights_equal_repeating_the_columns(pair_loss, weighting):
    # an importance weight is a column's multiplicity in the sample: weights (1, 2, 3, ...) must give
    # the loss and gradients of the unweighted pass over the columns repeated that many times
    scores, pos_row, pos_col, pos_grade, graded, weight = problem(K=70)
    times = torch.randint(1, 4, (70,), generator=torch.Generator().manual_seed(5))
    copies = torch.repeat_interleave(torch.arange(70), times)
    g_row, g_col, g_grade = graded
    at = torch.nonzero(g_col[:, None] == copies[None, :], as_tuple=True)  # every copy of a graded column
    graded_rep = (g_row[at[0]], at[1], g_grade[at[0]])
    kw = dict(pair_loss=pair_loss, weighting=weighting, n_items=500, fused=True)
    out = []
    for rep in (False, True):
        s = scores.clone().requires_grad_(True)
        sp = s[pos_row, pos_col].detach().requires_grad_(True)
        loss = row_pairwise_loss(s[:, copies], sp, pos_row, pos_grade, weight, graded_rep, **kw) if rep else \
            row_pairwise_loss(s, sp, pos_row, pos_grade, weight, graded, col_weight=times.float(), **kw)
        loss.backward()
        out.append((float(loss), s.grad, sp.grad))
    assert_same_loss_and_gradients(*out)
    assert not torch.allclose(out[0][1], row_gradient_unweighted(scores, pos_row, pos_col, pos_grade, graded, weight, **kw))


def row_gradient_unweighted(scores, pos_row, pos_col, pos_grade, graded, weight, **kw):
    s = scores.clone().requires_grad_(True)
    row_pairwise_loss(s, s[pos_row, pos_col].detach(), pos_row, pos_grade, weight, graded, **kw).backward()
    return s.grad


def test_column_weights_are_refused_off_the_cpp_pass_and_in_the_wrong_shape():
    scores, pos_row, pos_col, pos_grade, graded, weight = problem()
    sp = scores[pos_row, pos_col]
    with pytest.raises(ValueError, match="column weights .* C\\+\\+ pass"):
        row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="hinge", weighting="lambda",
                          col_weight=torch.ones(70))
    with pytest.raises(ValueError, match="column weights"):
        row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="hinge", weighting="warp",
                          col_weight=torch.ones(70), fused=False)
    with pytest.raises(ValueError, match=r"col_weight must have shape \(70,\)"):
        row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="hinge", weighting="warp",
                          col_weight=torch.ones(69))
    for value in (float("nan"), float("inf"), -1.0):
        w = torch.ones(70)
        w[12] = value
        with pytest.raises(ValueError, match=r"finite and >= 0 .* column 12 is"):
            row_pairwise_loss(scores, sp, pos_row, pos_grade, weight, graded, pair_loss="hinge", weighting="warp",
                              col_weight=w)
