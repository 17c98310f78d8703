"""THE score of a user and an item. Training, evaluation (the C++ core), model.ts and
model.pt2 all call this module:

    s(u, i) = <u, v_i> + b_i + item terms(i) + sparse terms(u, i)

It splits the score into what a catalogue scan computes and what it cannot:
- dense: the user vector against the item table, plus one bias per item. Item-level
  terms (the popularity prior) fold into that bias (``item_bias``), so the C++ core, the
  fp16 scan and a matrix product all get them without knowing they exist.
- sparse: per user, (item, value) pairs (``offsets``) for terms of a user and an item that
  touch few items (the repeat term: items in the user's history bag). They are added by
  index (``add_offsets``, ``offsets_at``) or handed to the C++ core as per-query score
  offsets: never a dense [B, N] matrix.

A new score term is one edit here, plus its key under ``model.score`` in the config and a test.
"""

from typing import Optional, Tuple

import torch
from torch import nn


class Scorer(nn.Module):
    """The score terms beyond the towers (scriptable and exportable).

    Args:
        n_items: catalogue size N.
        repeat: learn a score offset for items already in the user's history bag (repeat
            consumption: positive where people buy again, negative where, as with films,
            nobody rates an item twice).
        popularity_prior: add w * log(1 + n_i) to item i's score, n_i its training positives
            and w learned (from 0): a popularity signal the item's id embedding does not have
            to learn, and one a retrained model gets from fresh counts.
        item_popularity: n_i [N] (training positives per item); needed with the prior.
    """

    use_repeat: bool
    use_popularity: bool

    def __init__(self, n_items: int, repeat: bool, popularity_prior: bool,
                 item_popularity: Optional[torch.Tensor] = None):
        super().__init__()
        self.use_repeat = bool(repeat)
        self.use_popularity = bool(popularity_prior)
        # Present either way (TorchScript wants fixed attributes); trained only when the term is on.
        self.repeat = nn.Parameter(torch.zeros(()), requires_grad=self.use_repeat)
        self.popularity_weight = nn.Parameter(torch.zeros(()), requires_grad=self.use_popularity)
        pop = torch.zeros(n_items if self.use_popularity else 0)
        if self.use_popularity and item_popularity is not None:
            pop = torch.as_tensor(item_popularity, dtype=torch.float32)
            if pop.shape != (n_items,):
                raise ValueError(f"item_popularity must have shape ({n_items},), got {tuple(pop.shape)}")
        self.register_buffer("log_popularity", torch.log1p(pop.to(torch.float32)))

    # -- dense terms ------------------------------------------------------------------------
    def item_bias(self, bias: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The per-item part of the score: tower bias [K] plus item-level terms for the items
        with global indices ``items`` [K] -> [K]."""
        if self.use_popularity:
            bias = bias + self.popularity_weight * self.log_popularity[items]
        return bias

    def dense_queries(self, u: torch.Tensor) -> torch.Tensor:
        """The dense part as one inner product, user side: u [B, D] -> [u, 1] [B, D + 1]."""
        return torch.cat([u, torch.ones(u.shape[0], 1, dtype=u.dtype)], 1)

    def dense_items(self, vectors: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The dense part as one inner product, item side: vectors [N, D], bias [N] ->
        [v, b] [N, D + 1], so <[u, 1], [v, b]> = <u, v> + b (the C++ core and the fp16 scan)."""
        return torch.cat([vectors, bias.unsqueeze(1)], 1)

    def catalogue(self, u: torch.Tensor, items_t: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Dense scores of every item: u [B, D], items_t [D, N], bias [N] -> [B, N]."""
        # mm, then add: TorchScript's optimising executor decomposes addmm into these two, and
        # the fused form rounds differently; this way both executors give the same bits.
        return torch.mm(u, items_t) + bias

    # -- sparse terms -----------------------------------------------------------------------
    def has_offsets(self) -> bool:
        """Whether any sparse term is on (callers skip the offsets otherwise)."""
        return self.use_repeat

    def offsets(self, history: torch.Tensor, history_weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each user's sparse terms as (items [B, H] item indices, values [B, H]); a 0 value is
        no term. history [B, H] (item index + 1, 0 = padding) holds an item at most once (the
        sources de-duplicate the log, the UserResolver a request's history; a caller of
        model.pt2 must too); history_weights [B, H] (> 0 = in the bag)."""
        items = (history - 1).clamp_min(0)
        if not self.use_repeat:
            return items, torch.zeros(history.shape, dtype=torch.float32, device=history.device)
        return items, (history_weights > 0).to(torch.float32) * self.repeat

    def add_offsets(self, scores: torch.Tensor, items: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Catalogue scores [B, N] plus the sparse terms (items, values [B, H]), by index, in place."""
        return scores.scatter_add_(1, items, values)

    def offsets_at(self, targets: torch.Tensor, items: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The sparse terms (items, values [B, H]) that fall on targets [B, M] -> [B, M].

        By binary search in each user's sorted items, O(B (H + M) log H): comparing every target
        with every item made [B, M, H] temporaries (512 x 256 x 200 with shared negatives on
        MovieLens, the largest cost of a step). An item other than 0 occurs at most once per user
        (``offsets``); index 0 is also the padding (value 0), so its term is the sum over the
        0 entries. Equal to the sum over matches, bit for bit (the other terms are zeros)."""
        srt, order = torch.sort(items, dim=1)
        vals = values.gather(1, order)
        t = targets.contiguous()
        pos = torch.searchsorted(srt, t).clamp_max(items.shape[1] - 1)
        at = vals.gather(1, pos) * (srt.gather(1, pos) == t).to(values.dtype)
        zero = (values * (items == 0).to(values.dtype)).sum(1, keepdim=True)
        return torch.where(t == 0, zero.expand_as(at), at)

    # -- whole scores -----------------------------------------------------------------------
    def all_items(self, u: torch.Tensor, items_t: torch.Tensor, bias: torch.Tensor, off_items: torch.Tensor,
                  off_values: torch.Tensor) -> torch.Tensor:
        """Scores of every item: u [B, D], items_t [D, N], bias [N] (``item_bias`` applied), the
        users' ``offsets`` (off_items, off_values [B, H]) -> [B, N]."""
        s = self.catalogue(u, items_t, bias)
        if self.has_offsets():
            s = self.add_offsets(s, off_items, off_values)
        return s

    def these_items(self, u: torch.Tensor, vectors: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor,
                    off_items: torch.Tensor, off_values: torch.Tensor) -> torch.Tensor:
        """Scores of given items per user: u [B, D], their vectors [B, M, D], bias [B, M]
        (``item_bias`` applied) and global indices targets [B, M], the users' ``offsets``
        (off_items, off_values [B, H]) -> [B, M]."""
        s = torch.bmm(vectors, u.unsqueeze(2)).squeeze(2) + bias
        if self.has_offsets():
            s = s + self.offsets_at(targets, off_items, off_values)
        return s
