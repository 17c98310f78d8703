"""Training and scoring the sparse linear model on impression lists: batches of whole lists in a
seeded random order, the Δ-weighted pair objective within each list (rankers.losses.lambda_pairs),
an elastic-net optimiser (rankers.training.proximal). One pass is the paper's regime; ``passes``
> 1 repeats it with a fresh order each time (small data sets need several)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List

import numpy as np
import torch

from rankers.data.lists import ListData
from rankers.losses.lambda_pairs import lambda_pair_loss
from rankers.model.linear import SparseLinear


@dataclass
class ListBatch:
    """B lists of R rows: COO features (index, value, row [nnz]); labels, mask [B, M]; at int64
    [R]: each row's flat position in the padded [B, M] layout."""

    index: torch.Tensor
    value: torch.Tensor
    row: torch.Tensor
    n_rows: int
    labels: torch.Tensor
    mask: torch.Tensor
    at: torch.Tensor


def batch_of(data: ListData) -> ListBatch:
    """All of ``data`` as one batch."""
    sizes = np.diff(data.list_offsets)
    B, M = len(sizes), int(sizes.max())
    at = np.repeat(np.arange(B) * M, sizes) + (np.arange(data.n_rows) - np.repeat(data.list_offsets[:-1], sizes))
    labels = np.zeros(B * M, np.float32)
    labels[at] = data.labels
    mask = np.zeros(B * M, bool)
    mask[at] = True
    row = data.feature_rows()
    t = torch.from_numpy
    return ListBatch(t(data.feat_index), t(data.feat_value), t(row), data.n_rows, t(labels).view(B, M),
                     t(mask).view(B, M), t(at))


def batches(data: ListData, batch_lists: int, rng: np.random.Generator) -> Iterator[ListBatch]:
    """One pass: every list once, in a random order, ``batch_lists`` lists per batch."""
    order = rng.permutation(data.n_lists)
    for s in range(0, len(order), batch_lists):
        yield batch_of(data.take_lists(order[s:s + batch_lists]))


def padded_scores(model: SparseLinear, b: ListBatch) -> torch.Tensor:
    """Scores of a batch's rows in the padded layout [B, M] (0 on padding)."""
    flat = torch.zeros(b.mask.numel(), dtype=model.weight.dtype)
    return flat.index_copy(0, b.at, model(b.index, b.value, b.row, b.n_rows)).view(b.mask.shape)


def fit(model: SparseLinear, data: ListData, optimizer: torch.optim.Optimizer, *, passes: int = 1,
        batch_lists: int = 1, k: int = 10, delta: str = "ndcg", pair_loss: str = "logistic", margin: float = 1.0,
        seed: int = 0, on_pass: Callable[[int, SparseLinear], None] = None) -> List[float]:
    """Train ``model`` for ``passes`` passes; returns the mean loss of each pass."""
    rng = np.random.default_rng(seed)
    losses = []
    for p in range(passes):
        total, n = 0.0, 0
        for b in batches(data, batch_lists, rng):
            optimizer.zero_grad(set_to_none=True)
            if model.sparse_grad and hasattr(optimizer, "prepare"):  # lazy updates: read weights current
                optimizer.prepare(b.index)
            loss = lambda_pair_loss(padded_scores(model, b), b.labels, b.mask, k=k, delta=delta,
                                    pair_loss=pair_loss, margin=margin)
            loss.backward()
            optimizer.step()
            total, n = total + float(loss.detach()), n + 1
        if hasattr(optimizer, "finish"):  # PSGD and TGD sparsify once more: a pass ends sparse
            optimizer.finish()
        if hasattr(optimizer, "sync"):
            optimizer.sync()
        losses.append(total / max(n, 1))
        if on_pass is not None:
            on_pass(p, model)
    return losses


@torch.no_grad()
def predict(model: SparseLinear, data: ListData) -> np.ndarray:
    """Scores of every row [R] (numpy)."""
    row = torch.from_numpy(data.feature_rows())
    return model(torch.from_numpy(data.feat_index), torch.from_numpy(data.feat_value), row, data.n_rows).numpy()
