"""Full-catalogue evaluation over the C++ core: equal to a brute-force reference (sparse score
offsets included), and independent of the batch size and the thread count."""
import numpy as np
import pytest

import torch

from rankers.model import Scorer
from rankers.training.evaluation import MetricAccumulator, evaluate_popularity, metric_names
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
    # a repeat-like term: a few items per user (some of them targets) moved by +-1 or 2
    ids = rng.integers(0, n_items, (n_users, 6))
    values = rng.choice([-2.0, -1.0, 0.0, 1.0], (n_users, 6)).astype(np.float32)
    return U, V, b, targets, exclude, (ids, values)


def evaluate(U, V, b, targets, exclude, ks, batch_size, num_threads=None, offsets=None):
    acc = MetricAccumulator(len(V), ks)
    dense = Scorer(len(V), repeat=False, popularity_prior=False)  # the dense part as one inner product
    q = dense.dense_queries(torch.from_numpy(U)).numpy()
    items = dense.dense_items(torch.from_numpy(V), torch.from_numpy(b)).numpy()
    for s in range(0, len(U), batch_size):
        sl = slice(s, s + batch_size)
        acc.add(q[sl], items, targets[sl], exclude[sl], num_threads,
                None if offsets is None else (offsets[0][sl], offsets[1][sl]))
    return acc.result()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("with_offsets", [False, True])
def test_evaluation_equals_the_reference(seed, with_offsets):
    U, V, b, targets, exclude, offsets = _case(seed)
    got = evaluate(U, V, b, targets, exclude, (5,), 8, offsets=offsets if with_offsets else None)
    S = U.astype(np.float64) @ V.T.astype(np.float64) + b
    if with_offsets:
        for u, (ids, vals) in enumerate(zip(*offsets)):
            np.add.at(S[u], ids, vals)
    refs = [reference_metrics(S[u], list(targets[u]), set(exclude[u].tolist()), 5) for u in range(len(U))]
    for name, key in [("precision", "precision@5"), ("recall", "recall@5"), ("ndcg", "ndcg@5"), ("map", "map@5"),
                      ("mrr", "mrr"), ("auc", "auc")]:
        assert got[key] == pytest.approx(np.nanmean([r[name] for r in refs])), key
    assert sorted(k for k in got if k != "users") == sorted(metric_names((5,)))


def test_independent_of_batch_size_and_threads():
    U, V, b, targets, exclude, offsets = _case(7, n_users=101, n_items=300, d=8)
    base = evaluate(U, V, b, targets, exclude, (10, 20), 1000, 1, offsets)
    for bs, th in [(1, 1), (7, 2), (64, 3)]:
        assert evaluate(U, V, b, targets, exclude, (10, 20), bs, th, offsets) == base


def test_popularity_baseline_and_constant_scorer():
    _, V, _, targets, exclude, _ = _case(3)
    const = evaluate_popularity(np.zeros(len(V)), targets, exclude, ks=(5,), batch_size=16).result()
    assert const["ndcg@5"] == 0.0 and const["precision@5"] == 0.0 and const["auc"] == 0.0
    pop = np.zeros(len(V))
    for t in targets:
        pop[t] += 1  # an oracle popularity: the test targets themselves
    acc = evaluate_popularity(pop, targets, exclude, ks=(5,), batch_size=16)
    assert acc.result()["ndcg@5"] > 0.1
    se = acc.standard_errors()["ndcg@5"]
    values = np.array(acc.values["ndcg@5"])
    assert se == pytest.approx(values.std(ddof=1) / np.sqrt(len(values))) and 0 < se < 0.1


def test_ranks_shares_merged_equal_one_evaluation():
    # DDP: each rank evaluates its share of the users; the merged shares give the whole set's metrics.
    U, V, b, targets, exclude, offsets = _case(5, n_users=90, n_items=120, d=6)
    base = evaluate(U, V, b, targets, exclude, (10,), 16, offsets=offsets)
    dense = Scorer(len(V), repeat=False, popularity_prior=False)
    q = dense.dense_queries(torch.from_numpy(U)).numpy()
    items = dense.dense_items(torch.from_numpy(V), torch.from_numpy(b)).numpy()
    shares = [MetricAccumulator(len(V), (10,)) for _ in range(3)]
    for j, s in enumerate(range(0, len(U), 16)):
        sl = slice(s, s + 16)
        shares[j % 3].add(q[sl], items, targets[sl], exclude[sl], 1, (offsets[0][sl], offsets[1][sl]))
    assert all(acc.result()["users"] < len(U) for acc in shares)
    merged = MetricAccumulator(len(V), (10,))
    merged.merge(shares)
    assert merged.result() == base
