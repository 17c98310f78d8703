"""The repeat term: an offset for items in the user's history bag, in every path that scores."""
import numpy as np
import pytest
import torch

from rankers.models import TwoTower


def _net(repeat=-0.7):
    torch.manual_seed(0)
    net = TwoTower(n_user_tokens=10, n_item_tokens=12, n_items=8, dim=4, repeat=True)
    with torch.no_grad():
        net.repeat.fill_(repeat)
    return net.eval()


def _batch():
    history = torch.tensor([[3, 5, 0, 0], [1, 1, 8, 2], [0, 0, 0, 0]])   # item index + 1, duplicates allowed
    hw = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])  # item 4 left out
    return history, hw


def test_offsets_mark_exactly_the_items_in_the_bag():
    net = _net()
    history, hw = _batch()
    off = net.repeat_offsets(history, hw)
    expect = torch.zeros(3, 8)
    expect[0, 2] = expect[1, 0] = expect[1, 7] = expect[1, 1] = -0.7  # a duplicate counts once
    torch.testing.assert_close(off, expect)
    items = torch.tensor([[2, 4, 6], [0, 7, 3], [0, 1, 2]])
    torch.testing.assert_close(net.repeat_offsets(history, hw, items), expect.gather(1, items))


def test_forward_includes_the_offset_and_a_model_without_it_has_none():
    net = _net()
    history, hw = _batch()
    tok, w = torch.tensor([[1], [2], [3]]), torch.ones(3, 1)
    it_tok, it_w = torch.arange(1, 9)[:, None], torch.ones(8, 1)
    with torch.no_grad():
        full = net(tok, w, history, hw, it_tok, it_w)
        u = net.user_vectors(tok, w, history, hw)
        v, b = net.item_vectors(it_tok, it_w)
        torch.testing.assert_close(full, u @ v.T + b + net.repeat_offsets(history, hw))
        some = torch.tensor([7, 0])
        torch.testing.assert_close(net(tok, w, history, hw, it_tok[some], it_w[some], items=some), full[:, some])
    plain = TwoTower(n_user_tokens=10, n_item_tokens=12, n_items=8, dim=4)
    assert plain.repeat is None and plain.repeat_offsets(history, hw) is None
