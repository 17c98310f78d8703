"""Metrics from pessimistic ranks against a straightforward reference over full score vectors."""
import math

import numpy as np
import pytest

from rankers.metrics import ranking


def pessimistic_ranks(scores, targets, excluded):
    """Reference: sort eligible items by (score desc, non-targets first, index)."""
    elig = [i for i in range(len(scores)) if i not in excluded]
    tset = set(targets)
    order = sorted(elig, key=lambda i: (-scores[i], i in tset, i))
    pos = {item: r + 1 for r, item in enumerate(order)}
    return [pos[t] for t in targets], len(elig)


def reference_metrics(scores, targets, excluded, k):
    elig = [i for i in range(len(scores)) if i not in excluded]
    tset = set(targets)
    order = sorted(elig, key=lambda i: (-scores[i], i in tset, i))
    top = order[:k]
    hits = [1 if i in tset else 0 for i in top]
    p = sum(hits) / k
    r = sum(hits) / len(targets)
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(min(len(targets), k)))
    ap, seen = 0.0, 0
    for j, h in enumerate(hits):
        if h:
            seen += 1
            ap += seen / (j + 1)
    ap /= min(len(targets), k)
    first = next(j for j, i in enumerate(order) if i in tset) + 1
    negs = [i for i in elig if i not in tset]
    # pessimistic AUC: a tie between a target and a non-target counts as wrong
    auc = np.mean([np.mean([scores[t] > scores[n] for n in negs]) for t in targets]) if negs else float("nan")
    return {"precision": p, "recall": r, "ndcg": dcg / idcg, "map": ap, "mrr": 1 / first, "auc": auc}


@pytest.mark.parametrize("seed", range(40))
def test_metrics_match_the_reference_on_random_cases_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    scores = rng.integers(0, 4, n).astype(float)  # few levels: many ties
    n_t = int(rng.integers(1, min(6, n - 1) + 1))
    perm = rng.permutation(n)
    targets = sorted(perm[:n_t].tolist())
    excluded = set(perm[n_t:n_t + int(rng.integers(0, n - n_t))].tolist())
    k = int(rng.integers(1, 12))
    ranks, n_cand = pessimistic_ranks(scores, targets, excluded)
    R, n_pos = ranking.pad_ranks([np.array(ranks)])
    got = ranking.compute(R, n_pos, np.array([n_cand]), ks=(k,))
    ref = reference_metrics(scores, targets, excluded, k)
    assert got[f"precision@{k}"][0] == pytest.approx(ref["precision"])
    assert got[f"recall@{k}"][0] == pytest.approx(ref["recall"])
    assert got[f"ndcg@{k}"][0] == pytest.approx(ref["ndcg"])
    assert got[f"map@{k}"][0] == pytest.approx(ref["map"])
    assert got["mrr"][0] == pytest.approx(ref["mrr"])
    if np.isnan(ref["auc"]):
        assert np.isnan(got["auc"][0])
    else:
        assert got["auc"][0] == pytest.approx(ref["auc"])


def test_a_constant_scorer_gets_zero():
    n, targets = 50, [3, 7, 20]
    ranks, n_cand = pessimistic_ranks(np.zeros(n), targets, set())
    R, n_pos = ranking.pad_ranks([np.array(ranks)])
    got = ranking.compute(R, n_pos, np.array([n_cand]), ks=(10,))
    for name in ("precision@10", "recall@10", "ndcg@10", "map@10", "auc"):
        assert got[name][0] == 0.0, name


def test_a_perfect_scorer_gets_one():
    scores = np.arange(30, 0, -1).astype(float)  # item 0 best
    ranks, n_cand = pessimistic_ranks(scores, [0, 1, 2], set())
    R, n_pos = ranking.pad_ranks([np.array(ranks)])
    got = ranking.compute(R, n_pos, np.array([n_cand]), ks=(3,))
    for name in ("precision@3", "recall@3", "ndcg@3", "map@3", "mrr", "auc"):
        assert got[name][0] == pytest.approx(1.0), name


def test_padding_rows_of_different_lengths():
    R, n_pos = ranking.pad_ranks([np.array([1]), np.array([2, 5, 9])])
    assert R.shape == (2, 3) and list(n_pos) == [1, 3]
    got = ranking.compute(R, n_pos, np.array([10, 10]), ks=(5,))
    assert got["recall@5"].tolist() == pytest.approx([1.0, 2 / 3])
    assert got["precision@5"].tolist() == pytest.approx([0.2, 0.4])
