"""ElasticRank end to end on lists drawn from a hidden sparse linear utility: one pass learns it,
and a large λ1 leaves exact zeros on the features that do not matter."""
import numpy as np

from rankers.data.lists import ListData
from rankers.metrics.lists import ndcg_at_k, random_baseline
from rankers.model.linear import SparseLinear
from rankers.training.listwise import fit, predict
from rankers.training.proximal import FOBOS, RDA


def hidden_lists(n_lists=600, size=8, n_features=40, seed=0) -> ListData:
    """Dense features; the label grades a hidden utility that only the first 4 features drive."""
    rng = np.random.default_rng(seed)
    w = np.zeros(n_features)
    w[:4] = [2.0, -1.5, 1.0, 0.5]
    x = rng.random((n_lists * size, n_features))
    u = x @ w + 0.3 * rng.normal(size=len(x))
    within = u.reshape(n_lists, size).argsort(1).argsort(1).ravel()  # rank of each row in its list
    labels = np.where(within == size - 1, 2.0, np.where(within == size - 2, 1.0, 0.0)).astype(np.float32)
    return ListData(np.arange(0, n_lists * size + 1, size), labels, np.arange(0, x.size + 1, n_features),
                    np.tile(np.arange(n_features), len(x)), x.ravel().astype(np.float32), n_features,
                    np.arange(n_lists).astype(str).astype(object))


def test_one_pass_learns_the_hidden_ranking_and_l1_zeroes_the_noise():
    train, test = hidden_lists(seed=0), hidden_lists(n_lists=200, seed=1)
    floor = random_baseline(test.labels, test.list_offsets, ndcg_at_k, k=3)
    m = SparseLinear(train.n_features)
    losses = fit(m, train, FOBOS(m.parameters(), lr=0.5), passes=1, k=3)
    assert len(losses) == 1
    score = float(np.mean(ndcg_at_k(predict(m, test), test.labels, test.list_offsets, 3)))
    assert score > floor + 0.3
    sparse = SparseLinear(train.n_features)
    fit(sparse, train, RDA(sparse.parameters(), gamma=5.0, l1=0.05), passes=1, k=3)
    w = sparse.weight.detach().numpy()
    assert sparse.nonzeros() <= 10 and (w[:3] != 0).all()
    assert float(np.mean(ndcg_at_k(predict(sparse, test), test.labels, test.list_offsets, 3))) > floor + 0.25
