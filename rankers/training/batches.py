"""The typed contracts between the datamodule and the LightningModule: what one batch holds.

R rows (one user each, with one or more of its positives), P positives, M sampled negatives per
positive, S negatives shared by the batch, K distinct items in the batch, N items in the
catalogue. The user side is ``rankers.model.UserInputs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np
import torch

from rankers.model import UserInputs


@dataclass
class SampledNegatives:
    """M drawn negatives per positive: index [P, M] into the batch's items, grade [P, M] (0 =
    unobserved), mask [P, M] (1 = a valid pair); and S negatives shared by every row:
    shared [S] into the batch's items (S may be 0), and those the rows' users graded as COO,
    shared_graded = (row [G] ascending, column in S [G], grade > 0 [G]); every other (row, shared
    negative) is unobserved. A shared negative graded at or above a positive is no pair of it.
    shared_weight [S]: the shared columns' importance weights when they were drawn from a
    non-uniform proposal (``loss.negatives.shared_popularity``), else None."""

    index: torch.Tensor
    grade: torch.Tensor
    mask: torch.Tensor
    shared: torch.Tensor
    shared_graded: Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    shared_weight: Optional[torch.Tensor] = None

    def graded(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The shared negatives the rows' users graded, as COO (row [G], column in S [G], grade [G])."""
        return self.shared_graded


@dataclass
class CatalogueNegatives:
    """Every catalogue item is a negative (all pairs). Each row's user's graded training items
    come as COO, rows [G] (row in the batch), items [G], grades [G], so that items graded at
    or above a positive are no pair of it."""

    rows: torch.Tensor
    items: torch.Tensor
    grades: torch.Tensor

    def graded(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row [G], column = item [G], grade [G])."""
        return self.rows, self.items, self.grades


@dataclass
class PairBatch:
    """One training batch.

    users: the rows' users [R] (their history bags leave the row's positives out, so the model
        cannot score an item by finding it there).
    item_tokens, item_weights [K, Ti]; items [K]: the batch's items by global index (the whole
        catalogue, in order, with ``CatalogueNegatives``).
    pos [P]: each positive, an index into K; pos_row [P]: its row (ascending). pos_grade [P];
    weight [P]: sample weights; user_positives [P]: the user's number of training positives.
    negatives: drawn per positive and shared by the rows, or the whole catalogue.
    """

    users: UserInputs
    item_tokens: torch.Tensor
    item_weights: torch.Tensor
    items: torch.Tensor
    pos: torch.Tensor
    pos_row: torch.Tensor
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
