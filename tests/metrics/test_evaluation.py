"""Full-catalogue evaluation over the C++ core: equal to a brute-force reference, and
independent of the batch size and the thread count."""
import numpy as np
import pytest

from rankers.evaluation import evaluate_popularity, evaluate_vectors
from tests.metrics.test_ranking import reference_metrics


def _case(seed, n_users=37, n_items=60, d=5):
    rng = np.random.default_rng(seed)
    U = rng.integers(-2, 3, (n_users, d)).astype(np.float32)  # small integers: exact ties happen
    V = rng.integers(-2, 3, (n_items, d)).astype(np.float32)
    b = rng.integers(-1, 2, n_items).astype(np.float32)
    targets, exclude = [], []
    for _ in range(n_users):
        perm = rng.permutation(n_items)
        n_t = int(rng.integers(1, 6))
        targets.append(np.sort(perm[:n_t]))
        exclude.append(np.sort(perm[n_t:n_t + int(rng.integers(0, 15))]))
    return U, V, b, targets, exclude


@pytest.mark.parametrize("seed", range(3))
def test_evaluation_equals_the_reference(seed):
    U, V, b, targets, exclude = _case(seed)
    got = evaluate_vectors(U, V, b, targets, exclude, ks=(5,), batch_size=8)
    S = U.astype(np.float64) @ V.T.astype(np.float64) + b
    refs = [reference_metrics(S[u], list(targets[u]), set(exclude[u].tolist()), 5) for u in range(len(U))]
    for name, key in [("precision", "precision@5"), ("recall", "recall@5"), ("ndcg", "ndcg@5"), ("map", "map@5"),
                      ("mrr", "mrr"), ("auc", "auc")]:
        assert got[key] == pytest.approx(np.nanmean([r[name] for r in refs])), key


def test_independent_of_batch_size_and_threads():
    U, V, b, targets, exclude = _case(7, n_users=101, n_items=300, d=8)
    base = evaluate_vectors(U, V, b, targets, exclude, ks=(10, 20), batch_size=1000, num_threads=1)
    for bs, th in [(1, 1), (7, 2), (64, 3)]:
        assert evaluate_vectors(U, V, b, targets, exclude, ks=(10, 20), batch_size=bs, num_threads=th) == base


def test_popularity_baseline_and_constant_scorer():
    _, V, _, targets, exclude = _case(3)
    const = evaluate_popularity(np.zeros(len(V)), targets, exclude, ks=(5,))
    assert const["ndcg@5"] == 0.0 and const["precision@5"] == 0.0 and const["auc"] == 0.0
    pop = np.zeros(len(V))
    for t in targets:
        pop[t] += 1  # an oracle popularity: the test targets themselves
    assert evaluate_popularity(pop, targets, exclude, ks=(5,))["ndcg@5"] > 0.1


def test_augment_repeat_adds_the_offset_to_the_inner_product():
    from rankers.evaluation import augment_repeat

    rng = np.random.default_rng(4)
    q, items = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(9, 3)).astype(np.float32)
    member = (rng.random((5, 9)) < 0.3).astype(np.float32)
    q2, items2 = augment_repeat(q, items, member, -1.5)
    assert q2.shape == (5, 8) and items2.shape == (9, 8)
    np.testing.assert_allclose(q2 @ items2.T, q @ items.T - 1.5 * member, rtol=1e-6, atol=1e-6)
