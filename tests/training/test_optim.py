"""rankers.training.optim.Adagrad against torch.optim.Adagrad, the update it must equal."""
import pytest
import torch

from rankers.training.optim import Adagrad


def _twins(dim: int, sparse: bool, dtype=torch.float32):
    torch.manual_seed(dim)
    a = torch.nn.EmbeddingBag(500, dim, mode="sum", sparse=sparse).to(dtype)
    b = torch.nn.EmbeddingBag(500, dim, mode="sum", sparse=sparse).to(dtype)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("dim", [1, 5, 16, 64])
@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])
@pytest.mark.parametrize("threads", [1, 2])
def test_equals_torch_adagrad(dim, sparse, threads):
    ref, ours = _twins(dim, sparse)
    o_ref = torch.optim.Adagrad(ref.parameters(), lr=0.1, initial_accumulator_value=0.1)
    o_ours = Adagrad(ours.parameters(), lr=0.1, initial_accumulator_value=0.1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(1)
        for _ in range(15):
            # 6,000 lookups into 60 rows: every touched row repeats (duplicates must add up),
            # and enough entries that two threads split the runs.
            idx = torch.randint(0, 60, (6000,), generator=g)
            off = torch.arange(0, 6000, 40)
            target = torch.randn(150, dim, generator=g)
            for m, o in [(ref, o_ref), (ours, o_ours)]:
                o.zero_grad()
                ((m(idx, off) - target) ** 2).mean().backward()
                o.step()
    finally:
        torch.set_num_threads(old)
    assert ours.weight.grad.is_sparse == sparse
    torch.testing.assert_close(ours.weight, ref.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(o_ours.state[ours.weight]["sum"], o_ref.state[ref.weight]["sum"], rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours.weight[:60], _twins(dim, sparse)[0].weight[:60])  # it moved
    torch.testing.assert_close(ours.weight[60:], _twins(dim, sparse)[0].weight[60:])  # untouched rows did not


def test_tables_off_the_fast_path_take_torchs_formulas():
    ref, ours = _twins(8, True, torch.float64)  # the C++ pass is float32 only
    o_ref, o_ours = torch.optim.Adagrad(ref.parameters(), lr=0.05), Adagrad(ours.parameters(), lr=0.05)
    idx, off = torch.tensor([1, 2, 2, 7]), torch.tensor([0, 2])
    for m, o in [(ref, o_ref), (ours, o_ours)]:
        o.zero_grad()
        m(idx, off).sum().backward()
        o.step()
    torch.testing.assert_close(ours.weight, ref.weight)


def test_state_survives_a_checkpoint_round_trip():
    _, m = _twins(4, True)
    o = Adagrad(m.parameters(), lr=0.1)
    m(torch.tensor([3, 4]), torch.tensor([0])).sum().backward()
    o.step()
    o2 = Adagrad(m.parameters(), lr=0.1)
    o2.load_state_dict(o.state_dict())
    assert torch.equal(o2.state[m.weight]["sum"], o.state[m.weight]["sum"])
    assert o2.state[m.weight]["sum"][3].abs().sum() > 0


@pytest.mark.parametrize("kw", [dict(lr=0.0), dict(lr=0.1, eps=-1.0), dict(lr=0.1, initial_accumulator_value=-1.0)])
def test_bad_hyperparameters_name_themselves(kw):
    with pytest.raises(ValueError, match=next(iter(k for k in kw if k != "lr" or len(kw) == 1))):
        Adagrad(torch.nn.Linear(2, 2).parameters(), **kw)


def test_rows_outside_the_table_are_refused_before_the_core_writes():
    # The C++ pass trusts its rows; a gradient built without torch's invariant checks must not reach it.
    table = torch.nn.Parameter(torch.zeros(10, 4))
    o = Adagrad([table], lr=0.1)
    table.grad = torch.sparse_coo_tensor(torch.tensor([[2, 10]]), torch.ones(2, 4), (10, 4), check_invariants=False)
    with pytest.raises(IndexError, match=r"outside \[0, 10\)"):
        o.step()
    assert torch.equal(table, torch.zeros(10, 4)) and torch.equal(o.state[table]["sum"], torch.zeros(10, 4))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_training_bags_coalesced_gradients_update_as_torch_adagrad(threads):
    # BagEncoder(sparse=True) hands over one row per distinct token, sorted: the C++ pass takes it
    # without a sort; torch's Adagrad on nn.EmbeddingBag's per-entry gradient is the reference.
    from rankers.model.layers import BagEncoder

    torch.manual_seed(3)
    ours = BagEncoder(400, 16, sparse=True)
    ref = torch.nn.EmbeddingBag(400, 16, mode="sum", padding_idx=0, sparse=True)
    ref.load_state_dict(ours.embedding.state_dict())
    o_ours, o_ref = Adagrad(ours.parameters(), lr=0.1), torch.optim.Adagrad(ref.parameters(), lr=0.1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(4)
        for _ in range(10):
            tokens = torch.randint(0, 60, (500, 12), generator=g)  # repeats, padding 0 among them
            weights, target = torch.rand(500, 12, generator=g), torch.randn(500, 16, generator=g)
            for out, o in [(lambda: ours(tokens, weights), o_ours),
                           (lambda: ref(tokens, per_sample_weights=weights), o_ref)]:
                o.zero_grad()
                ((out() - target) ** 2).mean().backward()
                o.step()
    finally:
        torch.set_num_threads(old)
    rows = ours.embedding.weight.grad._indices()[0]
    assert torch.equal(rows, torch.unique(rows)) and len(rows) < tokens.numel()  # distinct, sorted: no sort
    torch.testing.assert_close(ours.embedding.weight, ref.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(o_ours.state[ours.embedding.weight]["sum"], o_ref.state[ref.weight]["sum"],
                               rtol=1e-5, atol=1e-6)
