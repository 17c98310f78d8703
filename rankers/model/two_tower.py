"""The two-tower model: score(u, i) = <user_tower(u), item_tower(i)> + bias(i) + the Scorer's terms.

User tower: the bag of the user's id and feature tokens plus the bag of the items in the
user's history (its own item table, as in SVD++), then an optional MLP. Item tower: the
bag of the item's id and feature tokens, an optional MLP, and a bias that is itself a bag
over the same tokens. Unknown ids map to their field's OOV token, so every score can come
from features alone. What is scored beyond the towers lives in ``rankers.model.score``.
"""
from __future__ import annotations

from typing import List, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import nn

from rankers.model.score import Scorer
from rankers.model.towers import ItemTower, UserTower


def history_mask(history: torch.Tensor) -> torch.Tensor:
    """The history weights of history bags [B, H] (item index + 1, 0 = padding): 1 on items,
    0 on padding, float32 [B, H]. A mask: the user tower normalises the bag."""
    return (history > 0).to(torch.float32)


class UserInputs(NamedTuple):
    """What the user side of the model reads.

    tokens int64 [B, Tu] (0 = padding) and weights float32 [B, Tu]: the user's token bag;
    history int64 [B, H]: item index + 1, 0 = padding, each item at most once;
    history_weights float32 [B, H]: 1 = in the bag, 0 = left out (``history_mask``, minus
    what training drops; the user tower normalises the bag).
    """

    tokens: torch.Tensor
    weights: torch.Tensor
    history: torch.Tensor
    history_weights: torch.Tensor


class TwoTower(nn.Module):
    """Two towers and the Scorer; the plain nn.Module that training fits and export ships.

    Args:
        n_user_tokens, n_item_tokens, n_items: vocabulary sizes (``RankingData.sizes()``).
        dim: embedding size D. use_history: add the history bag to the user vector.
        user_mlp / item_mlp: hidden sizes of optional residual MLPs ([] = none).
        use_bias: learn an item bias. dropout: inside the MLPs.
        history_alpha: the history bag is divided by (its length)^alpha (1 = mean).
        sparse: sparse gradients for the embedding tables (large vocabularies; with Adagrad).
        score: the Scorer's switches (``model.score``: repeat, popularity_prior).
        item_popularity: [N] training positives per item (data, for the popularity prior).
    The defaults of every hyperparameter live in ``rankers/conf/model/``. (Id and history
    dropout, which train the cold-start path, are applied by the data pipeline.)
    """

    def __init__(self, n_user_tokens: int, n_item_tokens: int, n_items: int, *, dim: int, use_history: bool,
                 user_mlp: List[int], item_mlp: List[int], use_bias: bool, dropout: float,
                 history_alpha: float, sparse: bool, score: Mapping[str, bool],
                 item_popularity: Optional[torch.Tensor] = None):
        super().__init__()
        if dim < 1:
            raise ValueError(f"model.dim must be >= 1, got {dim}")
        score = dict(score)
        self.hparams = dict(n_user_tokens=n_user_tokens, n_item_tokens=n_item_tokens, n_items=n_items, dim=dim,
                            use_history=use_history, user_mlp=list(user_mlp), item_mlp=list(item_mlp),
                            use_bias=use_bias, dropout=dropout, history_alpha=history_alpha, sparse=sparse,
                            score=score)
        self.dim, self.n_items = dim, n_items
        self.user_tower = UserTower(n_user_tokens, n_items, dim, use_history, list(user_mlp), dropout,
                                    history_alpha, sparse)
        self.item_tower = ItemTower(n_item_tokens, dim, list(item_mlp), use_bias, dropout, sparse)
        self.scorer = Scorer(n_items, item_popularity=item_popularity, **score)

    @staticmethod
    def row_spaces() -> dict:
        """What the rows of each table index (a warm start maps them from a previous model):
        parameter name -> "user_tokens" | "item_tokens" | "items+1" (item index + 1, 0 = padding)."""
        return {"user_tower.features.embedding.weight": "user_tokens",
                "user_tower.history.embedding.weight": "items+1",
                "item_tower.features.embedding.weight": "item_tokens",
                "item_tower.bias.embedding.weight": "item_tokens"}

    def user_vectors(self, users: UserInputs) -> torch.Tensor:
        """-> [B, D]."""
        return self.user_tower(*users)

    def item_vectors(self, tokens: torch.Tensor, weights: torch.Tensor,
                     items: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Item bags [K, Ti] of the items with global indices ``items`` [K] -> (vectors [K, D],
        bias [K] with the Scorer's item terms)."""
        v, b = self.item_tower(tokens, weights)
        return v, self.scorer.item_bias(b, items)

    @torch.no_grad()
    def catalogue_table(self, tokens: torch.Tensor, weights: torch.Tensor,
                        chunk: int = 65536) -> Tuple[torch.Tensor, torch.Tensor]:
        """The whole catalogue's item bags [N, Ti] -> (vectors [N, D], bias [N]), in chunks,
        without gradients: what evaluation ranks and what export stores."""
        vs, bs = [], []
        for s in range(0, len(tokens), chunk):
            v, b = self.item_vectors(tokens[s:s + chunk], weights[s:s + chunk],
                                     torch.arange(s, min(s + chunk, len(tokens))))
            vs.append(v)
            bs.append(b)
        return torch.cat(vs), torch.cat(bs)

    def score_catalogue(self, users: UserInputs, u: torch.Tensor, v: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scores of every item: u [B, D], the catalogue's v [N, D], b [N] -> [B, N]."""
        return self.scorer.all_items(u, v.t(), b, *self.scorer.offsets(users.history, users.history_weights))

    def score_items(self, users: UserInputs, u: torch.Tensor, v: torch.Tensor, b: torch.Tensor,
                    items: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Scores of chosen items per user: u [B, D]; v [K, D], b [K] of the items with global
        indices items [K]; index [B, M] into K -> [B, M]."""
        return self.scorer.these_items(u, v[index], b[index], items[index],
                                       *self.scorer.offsets(users.history, users.history_weights))

    def score_shared(self, users: UserInputs, u: torch.Tensor, v: torch.Tensor, b: torch.Tensor,
                     items: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """Scores of the same items for every user: u [B, D]; v [K, D], b [K] of the items with
        global indices items [K]; shared [S] into K -> [B, S]."""
        s = self.scorer.catalogue(u, v[shared].t(), b[shared])
        if self.scorer.has_offsets():
            off_items, off_values = self.scorer.offsets(users.history, users.history_weights)
            s = s + self.scorer.offsets_at(items[shared].expand(u.shape[0], -1), off_items, off_values)
        return s

    def forward(self, users: UserInputs, item_tokens: torch.Tensor, item_weights: torch.Tensor,
                items: torch.Tensor) -> torch.Tensor:
        """Scores of every user against every given item (distinct global indices ``items`` [K]) -> [B, K]."""
        u = self.user_vectors(users)
        v, b = self.item_vectors(item_tokens, item_weights, items)
        s = self.scorer.catalogue(u, v.t(), b)
        if self.scorer.has_offsets():  # each term lands on its item's column, or nowhere
            off_items, off_values = self.scorer.offsets(users.history, users.history_weights)
            column = torch.full((self.n_items,), -1, dtype=torch.int64)
            column[items] = torch.arange(len(items))
            at = column[off_items]
            s = self.scorer.add_offsets(s, at.clamp_min(0), off_values * (at >= 0))
        return s
