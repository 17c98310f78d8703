"""The training bag's gradient (C++ pass, or row-sparse COO) against nn.EmbeddingBag's."""
import pytest
import torch

from rankers.model.layers import BagEncoder


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_training_bag_gradient_equals_embedding_bag(sparse, threads):
    torch.manual_seed(0)
    bag = BagEncoder(3000, 24, sparse=sparse)
    tokens = torch.randint(0, 3000, (300, 40))
    tokens[:, -5:] = 0  # padding gets no gradient
    tokens[7] = 11  # one token many times in a bag
    weights = torch.rand(300, 40)
    g = torch.randn(300, 24)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = bag(tokens, weights)
        (out * g).sum().backward()
    finally:
        torch.set_num_threads(prev)
    ref = torch.nn.functional.embedding_bag(tokens, bag.embedding.weight.detach().clone().requires_grad_(True),
                                            per_sample_weights=weights, mode="sum", padding_idx=0)
    table = bag.embedding.weight
    want_table = torch.zeros_like(table).index_add_(0, tokens[tokens != 0],
                                                    (weights[..., None] * g[:, None, :])[tokens != 0])
    got = table.grad.to_dense() if sparse else table.grad
    assert table.grad.is_sparse == sparse
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(got, want_table, rtol=1e-5, atol=1e-5)
    assert (got[0] == 0).all()
    if sparse:  # one row per distinct non-padding token, sorted: the optimiser has nothing to sort or add
        assert torch.equal(table.grad._indices()[0], torch.unique(tokens[tokens != 0]))


def test_evaluation_and_scripting_run_the_plain_embedding_bag():
    bag = BagEncoder(50, 4).eval()
    tokens, weights = torch.randint(0, 50, (3, 6)), torch.rand(3, 6)
    scripted = torch.jit.script(bag)
    torch.testing.assert_close(scripted(tokens, weights), bag.embedding(tokens, per_sample_weights=weights))
    with pytest.raises(RuntimeError, match="num_embeddings"):  # out of range: refused before the C++ pass
        bag.train()(torch.tensor([[50]]), torch.ones(1, 1))
