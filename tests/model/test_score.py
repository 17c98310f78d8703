"""The Scorer: its terms and its two answers ("all items", "these items") agree."""
import pytest
import torch

from rankers.model import Scorer, TwoTower, UserInputs

ARCH = dict(dim=4, use_history=True, user_mlp=[], item_mlp=[], use_bias=True, dropout=0.0, history_alpha=1.0,
            sparse=False)


def _net(repeat=False, popularity_prior=False, pop=None):
    torch.manual_seed(0)
    net = TwoTower(10, 12, 8, **ARCH, score={"repeat": repeat, "popularity_prior": popularity_prior},
                   item_popularity=pop)
    with torch.no_grad():
        net.scorer.repeat.fill_(-0.7)
        net.scorer.popularity_weight.fill_(0.5)
    return net.eval()


def _users():
    history = torch.tensor([[3, 5, 0, 0], [1, 7, 8, 2], [0, 0, 0, 0]])   # item index + 1, 0 = padding
    hw = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])  # item 4 left out
    return UserInputs(torch.tensor([[1], [2], [3]]), torch.ones(3, 1), history, hw)


def dense_offsets(scorer, users, n):
    items, values = scorer.offsets(users.history, users.history_weights)
    return torch.zeros(len(items), n).scatter_add(1, items, values)


def test_repeat_offsets_mark_exactly_the_items_in_the_bag():
    scorer = _net(repeat=True).scorer
    got = dense_offsets(scorer, _users(), 8)
    expect = torch.zeros(3, 8)
    expect[0, 2] = expect[1, 0] = expect[1, 6] = expect[1, 7] = expect[1, 1] = -0.7
    torch.testing.assert_close(got, expect)
    assert scorer.has_offsets()
    plain = _net().scorer
    assert not plain.has_offsets() and (dense_offsets(plain, _users(), 8) == 0).all()


def test_popularity_prior_folds_into_the_item_bias():
    pop = torch.tensor([0.0, 1, 3, 7, 0, 0, 15, 2])
    net = _net(popularity_prior=True, pop=pop)
    tok, w = torch.arange(1, 9)[:, None], torch.ones(8, 1)
    with torch.no_grad():
        _, b = net.item_vectors(tok, w, torch.arange(8))
        _, tower_b = net.item_tower(tok, w)
    torch.testing.assert_close(b, tower_b + 0.5 * torch.log1p(pop))
    with pytest.raises(ValueError, match=r"item_popularity must have shape \(8,\)"):
        Scorer(8, repeat=False, popularity_prior=True, item_popularity=torch.ones(3))


@pytest.mark.parametrize("terms", [{}, {"repeat": True}, {"popularity_prior": True},
                                   {"repeat": True, "popularity_prior": True}])
def test_all_items_and_these_items_give_the_same_scores(terms):
    net = _net(**terms, pop=torch.arange(8.0))
    users = _users()
    tok, w = torch.arange(1, 9)[:, None], torch.ones(8, 1)
    with torch.no_grad():
        u = net.user_vectors(users)
        v, b = net.item_vectors(tok, w, torch.arange(8))
        full = net.score_catalogue(users, u, v, b)
        torch.testing.assert_close(full, u @ v.T + b + dense_offsets(net.scorer, users, 8))
        index = torch.tensor([[2, 4, 6], [0, 7, 3], [0, 1, 2]])
        torch.testing.assert_close(net.score_items(users, u, v, b, torch.arange(8), index), full.gather(1, index))
        some = torch.tensor([7, 0])
        torch.testing.assert_close(net(users, tok[some], w[some], some), full[:, some])


def test_offsets_at_equals_the_sum_over_matches_with_its_gradient():
    # offsets_at searches each user's sorted items; the definition is the sum of the values of
    # every entry equal to the target. Index 0 doubles as padding (value 0) and as a real item.
    from rankers.model.score import Scorer

    g = torch.Generator().manual_seed(0)
    B, H, M, N = 32, 20, 40, 60
    for _ in range(20):
        items = torch.stack([torch.randperm(N, generator=g)[:H] for _ in range(B)])
        kept = torch.arange(H)[None, :] < torch.randint(0, H + 1, (B, 1), generator=g)
        items = torch.where(kept, items, 0)
        values = (torch.randn(B, H, generator=g) * kept).requires_grad_()
        targets = torch.randint(0, N, (B, M), generator=g)
        targets[:, :2] = 0
        ref = ((targets.unsqueeze(2) == items.unsqueeze(1)).float() * values.unsqueeze(1)).sum(2)
        got = Scorer.offsets_at(None, targets, items, values)
        assert torch.equal(got, ref)
        assert torch.equal(torch.autograd.grad(got.sum(), values)[0], torch.autograd.grad(ref.sum(), values)[0])
