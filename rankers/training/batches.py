"""The typed contracts between the datamodule and the LightningModule: what one batch holds.

B rows (one positive each), M sampled negatives per row, K distinct items in the batch,
N items in the catalogue. The user side is ``rankers.model.UserInputs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple, Union

import numpy as np
import torch

from rankers.model import UserInputs


@dataclass
class SampledNegatives:
    """M drawn negatives per row: index [B, M] into the batch's items, grade [B, M] (0 =
    unobserved), mask [B, M] (1 = a valid pair); and S negatives shared by every row:
    shared [S] into the batch's items, shared_grade / shared_mask [B, S] (S may be 0)."""

    index: torch.Tensor
    grade: torch.Tensor
    mask: torch.Tensor
    shared: torch.Tensor
    shared_grade: torch.Tensor
    shared_mask: torch.Tensor


@dataclass
class CatalogueNegatives:
    """Every catalogue item is a negative (all pairs). Each row's user's graded training items
    come as COO, rows [S] (row in the batch), items [S], grades [S], so that items graded at
    or above the positive are masked."""

    rows: torch.Tensor
    items: torch.Tensor
    grades: torch.Tensor

    def grades_and_mask(self, pos_grade: torch.Tensor, n_items: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """pos_grade [B] -> (grades [B, N], mask [B, N]: 1 where the item is graded below the positive)."""
        g = torch.zeros(len(pos_grade), n_items, dtype=pos_grade.dtype)
        g[self.rows, self.items] = self.grades
        return g, (g < pos_grade[:, None]).to(pos_grade.dtype)


@dataclass
class PairBatch:
    """One training batch.

    users: the rows' users (their history bags leave the positive out, so the model cannot
        score an item by finding it there).
    item_tokens, item_weights [K, Ti]; items [K]: the batch's items by global index (the whole
        catalogue, in order, with ``CatalogueNegatives``).
    pos [B]: each row's positive, an index into K. pos_grade [B]; weight [B]: row weights;
    user_positives [B]: the row's user's number of training positives.
    negatives: drawn per row, or the whole catalogue.
    """

    users: UserInputs
    item_tokens: torch.Tensor
    item_weights: torch.Tensor
    items: torch.Tensor
    pos: torch.Tensor
    pos_grade: torch.Tensor
    weight: torch.Tensor
    user_positives: torch.Tensor
    negatives: Union[SampledNegatives, CatalogueNegatives]

    def __len__(self) -> int:
        return len(self.pos)


@dataclass
class EvalBatch:
    """Users to rank the catalogue for: their inputs, and per user the held-out positives
    (targets) and the items left out of the ranking (exclude), as int64 arrays."""

    users: UserInputs
    targets: List[np.ndarray]
    exclude: List[np.ndarray]

    def __len__(self) -> int:
        return len(self.targets)
