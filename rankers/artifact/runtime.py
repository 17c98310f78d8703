"""The module that becomes model.ts: strings in, strings out, loaded by production with torch alone.

It composes the model's own parts: the users are resolved by ``UserResolver`` (the
Tokenizer), the user vector comes from the trained user tower, and every score from the
trained ``Scorer`` (its item terms are already in the stored bias). What is its own is the
catalogue scan: the item table in the layout that suits the chosen precision, and the proof
that an fp16 scan's top-k is the exact one.

Every ``ValueError`` raised here (or by the tokenizer) means a request that cannot be served
(unknown feature, bad numeric value, unknown item id, k < 1): in Python it surfaces as
``torch.jit.Error``, in C++ as a ``torch::jit::JITException`` with Python class
``builtins.ValueError``. Anything else is a fault of the model.
"""
from typing import Dict, List, Tuple

import torch
from torch import nn

from rankers.artifact.scan import Fp16Scan, topk_blocked
from rankers.artifact.users import UserResolver
from rankers.model.score import Scorer
from rankers.model.two_tower import history_mask


def known_user_vectors(user_tower: nn.Module, users: UserResolver, chunk: int = 4096) -> torch.Tensor:
    """The tower over the stored users -> vectors [U, D]. In batches: with MLP layers a row may
    differ from the per-request computation in the last bit (matmul blocking depends on the
    batch), never more."""
    out = []
    with torch.no_grad():
        for s in range(0, users.tokens.shape[0], chunk):
            e = min(s + chunk, users.tokens.shape[0])
            h = users.padded_histories(s, e)
            out.append(user_tower(users.tokens[s:e].to(torch.int64), users.weights[s:e], h, history_mask(h)))
    return torch.cat(out) if out else torch.zeros(0, 0)


class Recommender(nn.Module):
    """The exported scorer. See ``recommend`` and ``score``.

    Args:
        users: the UserResolver. user_tower: the trained UserTower. scorer: the trained Scorer.
        item_vectors [N, D], item_bias [N] (with the Scorer's item terms); item_ids [N].
        version: unique per export. scan: "fp32" or "fp16" (see ``rankers.artifact.scan``).
    """

    # Class-level annotations: TorchScript needs them for containers that may be empty.
    item_ids: List[str]
    item_index: Dict[str, int]
    version: str
    approximate: bool
    scan_precision: str
    max_item_norm: float
    exact_fallbacks: int

    def __init__(self, users: UserResolver, user_tower: nn.Module, scorer: Scorer, item_vectors: torch.Tensor,
                 item_bias: torch.Tensor, item_ids: List[str], version: str, scan: str):
        super().__init__()
        if scan not in ("fp32", "fp16"):
            raise ValueError(f"scan must be 'fp32' or 'fp16', got {scan!r}")
        self.users = users
        self.user_tower = user_tower
        self.scorer = scorer
        self.register_buffer("item_bias", item_bias.contiguous())           # [N]
        # recommend's scan, and the float32 table in the layout that suits it:
        # "fp32": stored [D, N], so one user's scan is a column-major gemv that streams the
        #   table once with full-width FMAs ([N, D] makes it N 64-long dot products, ~2x slower);
        # "fp16": a half-precision copy does the scan (half the bytes to stream); its best
        #   candidates are re-scored exactly from rows [N, D], which gather faster than columns.
        self.scan_precision = scan
        self.approximate = scan == "fp16"
        n, dim = item_vectors.shape
        dense = scorer.dense_items(item_vectors, item_bias)  # [N, D + 1]: [x_i, b_i]
        if self.approximate:
            self.fp16_scan = Fp16Scan(dense)
            self.register_buffer("item_rows", item_vectors.contiguous())   # [N, D]
            self.register_buffer("item_matrix", torch.zeros(dim, 0))      # unused: one float32 copy is enough
        else:
            self.fp16_scan = nn.Identity()  # never called: TorchScript needs the attribute typed
            self.register_buffer("item_rows", torch.zeros(0, dim))        # unused
            self.register_buffer("item_matrix", item_vectors.t().contiguous())  # [D, N]
        # over [x_i, b_i], the rows the fp16 scan multiplies by [u, 1]
        self.max_item_norm = float(dense.norm(dim=1).max()) if n else 0.0
        self.exact_fallbacks = 0  # recommend calls whose fp16 candidates could not prove the top-k
        # A known user's vector without feature overrides depends on the export alone: computed
        # once here, it saves the tower per request (and is smaller than the bags it comes from).
        self.register_buffer("user_vectors", known_user_vectors(user_tower, users))
        # and the vector of a user it knows nothing about (the anonymous fallback): a constant too
        tokens, weights, history = users.resolve("", {})  # ids are never empty: "" is unknown
        with torch.no_grad():
            self.register_buffer("unknown_user_vector", self.tower(tokens, weights, history))
        self.register_buffer("unknown_user_history", history)
        self.item_ids = list(item_ids)
        self.item_index = {s: i for i, s in enumerate(item_ids)}
        self.version = version

    # -- users ------------------------------------------------------------------------------
    @torch.jit.export
    def user_inputs(self, user_id: str, features: Dict[str, List[str]]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The user's token bag (tokens [T], weights [T]) and history bag [H], as the model reads them."""
        return self.users.resolve(user_id, features)

    def user_state(self, user_id: str, features: Dict[str, List[str]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(vector [D], history bag [H] as item index + 1, 0 = padding) of one user."""
        row = self.users.user_index.get(user_id, -1)
        if len(features) == 0:
            if row >= 0:
                return self.user_vectors[row], self.users.stored_history(row)
            return self.unknown_user_vector, self.unknown_user_history
        tokens, weights, history = self.users.resolve(user_id, features)
        return self.tower(tokens, weights, history), history

    def tower(self, tokens: torch.Tensor, weights: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """One user's vector [D] from its bag (tokens, weights [T]) and history bag [H]."""
        h = history.unsqueeze(0)
        return self.user_tower(tokens.unsqueeze(0), weights.unsqueeze(0), h, history_mask(h))[0]

    @torch.jit.export
    def user_vector(self, user_id: str, features: Dict[str, List[str]]) -> torch.Tensor:
        """One user's vector [D]: a known id uses its stored bag and history; fields given in
        ``features`` replace the stored ones; an unknown id scores from features alone."""
        return self.user_state(user_id, features)[0]

    def offsets(self, history: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The Scorer's sparse terms of one user: (items [1, H], values [1, H]); empty without any."""
        if not self.scorer.has_offsets():
            return torch.zeros(1, 0, dtype=torch.int64), torch.zeros(1, 0)
        h = history.unsqueeze(0)
        return self.scorer.offsets(h, history_mask(h))

    # -- scores -----------------------------------------------------------------------------
    @torch.jit.export
    def item_table(self) -> torch.Tensor:
        """The float32 item vectors as [D, N] (a transposed view of the rows with the fp16 scan)."""
        return self.item_rows.t() if self.approximate else self.item_matrix

    def _item_vectors(self, ix: torch.Tensor) -> torch.Tensor:
        """The float32 vectors of items ``ix`` [K] as [K, D], gathered from the stored layout
        (index_select on a transposed view of the rows would copy the whole table first)."""
        if self.approximate:
            return self.item_rows.index_select(0, ix)
        return self.item_matrix.index_select(1, ix).t()

    @torch.jit.export
    def approximate_scores(self, u: torch.Tensor) -> torch.Tensor:
        """The fp16 scan's scores [N] of every item for one user vector u [D] (no sparse terms),
        within ``scan_error`` of the exact ones (exports with scan fp16 only)."""
        return self.fp16_scan(self.scorer.dense_queries(u.unsqueeze(0)))

    @torch.jit.export
    def catalogue_scores(self, u: torch.Tensor) -> torch.Tensor:
        """Dense exact scores [N] of every item for one user vector u [D] (no sparse terms)."""
        return self.scorer.catalogue(u.unsqueeze(0), self.item_table(), self.item_bias)[0]

    def _candidate_scores(self, u: torch.Tensor, ix: torch.Tensor, off_items: torch.Tensor,
                          off_values: torch.Tensor) -> torch.Tensor:
        """Exact scores [K] of items ix [K] for one user vector u [D] and its offsets."""
        return self.scorer.these_items(u.unsqueeze(0), self._item_vectors(ix).unsqueeze(0),
                                       self.item_bias.index_select(0, ix).unsqueeze(0), ix.unsqueeze(0),
                                       off_items, off_values)[0]

    def _adjusted(self, scores: torch.Tensor, off_items: torch.Tensor, off_values: torch.Tensor,
                  excluded: torch.Tensor) -> torch.Tensor:
        """Catalogue scores [N], in place: the sparse terms and -inf on ``excluded`` [E] (item
        indices), each by index: no pass over the catalogue."""
        if off_items.numel() > 0:
            self.scorer.add_offsets(scores.unsqueeze(0), off_items, off_values)
        if excluded.numel() > 0:
            scores.index_fill_(0, excluded, float("-inf"))
        return scores

    @torch.jit.export
    def recommend(self, user_id: str, features: Dict[str, List[str]], k: int,
                  exclude: List[str]) -> Tuple[List[str], List[float]]:
        """Top-k item ids and scores for one user; ``exclude`` ids never appear (unknown ids ignored)."""
        if k <= 0:
            raise ValueError("k must be >= 1, got " + str(k))
        with torch.no_grad():
            u, h = self.user_state(user_id, features)
            excluded: Dict[int, bool] = {}  # a set: repeated ids count once
            for item in exclude:
                ix = self.item_index.get(item, -1)
                if ix >= 0:
                    excluded[ix] = True
            ex = torch.tensor(list(excluded.keys()), dtype=torch.int64)
            k = min(k, self.item_bias.shape[0] - len(excluded))
            values, index = self.top_items(u, h, ex, k)
            idx: List[int] = index.tolist()
            vals: List[float] = values.tolist()
            ids = [self.item_ids[i] for i in idx]
            return ids, vals

    @torch.jit.export
    def top_items(self, u: torch.Tensor, history: torch.Tensor, excluded: torch.Tensor,
                  k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k best items for a user vector u [D] with history bag [H] (item index + 1),
        without ``excluded`` [E] (unique item indices): (scores [k], indices [k]), best first;
        k at most the items left.

        With the fp16 scan, its m = k + margin best are re-scored exactly. Every other item
        scores at most its fp16 score + e (``scan_error``), so the exact top-k is among them
        whenever the m-th fp16 score is below the k-th by more than 2e; when it is not (many
        near-equal scores), one exact pass over the catalogue answers instead.
        """
        if k <= 0:
            return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        off_items, off_values = self.offsets(history)
        if not self.approximate:
            return self._exact_top(u, off_items, off_values, excluded, k)
        scores = self._adjusted(self.approximate_scores(u), off_items, off_values, excluded)
        avail = scores.shape[0] - excluded.numel()
        m = min(k + max(16, k // 4), avail)
        values, cand = topk_blocked(scores, m)
        max_offset = float(off_values.abs().max()) if off_values.numel() > 0 else 0.0
        if m < avail and float(values[m - 1]) >= float(values[k - 1]) - 2.0 * self.scan_error(u, max_offset):
            self.exact_fallbacks += 1
            return self._exact_top(u, off_items, off_values, excluded, k)
        top = torch.topk(self._candidate_scores(u, cand, off_items, off_values), k)
        return top.values, cand[top.indices]

    def scan_error(self, u: torch.Tensor, max_offset: float) -> float:
        """A bound on |fp16 scan score - exact score| for any item, for the user vector u [D]
        and sparse terms of magnitude at most ``max_offset``.

        The scan multiplies [u, 1] by the rows [x_i, b_i] rounded to fp16. Rounding moves an
        entry by at most 2^-11 of itself (normal range) or 2^-25 (subnormal), so a score moves
        by at most 2^-11 |u'|.|x'| + 2^-25 |u'|_1, with |u'|.|x'| <= ||u'|| max ||x'|| and
        |u'|_1 <= sqrt(D + 1) ||u'||; the rest covers float32 accumulation in both scans and
        the sparse terms' addition.
        """
        norm = float(u.norm()) + 1.0  # ||[u, 1]|| <= ||u|| + 1
        dim = u.shape[0] + 1
        # |u'|_1 <= sqrt(D + 1) ||u'||: one reduction over u, not two
        return (norm * self.max_item_norm * (2.0 ** -11 + 2.0 * dim * 2.0 ** -24)
                + norm * dim ** 0.5 * 2.0 ** -25 + max_offset * 2.0 ** -22)

    def _exact_top(self, u: torch.Tensor, off_items: torch.Tensor, off_values: torch.Tensor, excluded: torch.Tensor,
                   k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k best by one exact pass over the catalogue (arguments as ``top_items``)."""
        return topk_blocked(self._adjusted(self.catalogue_scores(u), off_items, off_values, excluded), k)

    @torch.jit.export
    def score(self, user_id: str, features: Dict[str, List[str]], items: List[str]) -> List[float]:
        """Scores of the given item ids for one user (unknown item ids are an error)."""
        with torch.no_grad():
            u, h = self.user_state(user_id, features)
            idx: List[int] = []
            for item in items:
                if item not in self.item_index:
                    raise ValueError("unknown item id '" + item + "'")
                idx.append(self.item_index[item])
            off_items, off_values = self.offsets(h)
            out: List[float] = self._candidate_scores(u, torch.tensor(idx, dtype=torch.int64), off_items,
                                                      off_values).tolist()
            return out

    @torch.jit.export
    def rerank(self, user_id: str, features: Dict[str, List[str]], candidates: List[str],
               candidate_features: Dict[str, List[str]]) -> Tuple[List[str], List[float]]:
        """The candidates ordered by ``score``, best first (ties keep their given order). A
        two-tower export has no candidate features: give none (a two-stage export's reranker reads them)."""
        if len(candidate_features) > 0:
            raise ValueError("this model has no candidate features (a two-tower export); got "
                             + ", ".join(list(candidate_features.keys())))
        s = torch.tensor(self.score(user_id, features, candidates), dtype=torch.float32)
        order = torch.sort(s, descending=True, stable=True).indices
        idx: List[int] = order.tolist()
        out: List[float] = s[order].tolist()
        return [candidates[i] for i in idx], out

    @torch.jit.export
    def pair_scores(self, user_ids: List[str], item_ids: List[str], users: torch.Tensor,
                    items: torch.Tensor) -> torch.Tensor:
        """Scores [P] of the pairs (user_ids[users[p]], item_ids[items[p]]) (users, items int64 [P]),
        each user as ``score`` sees it without features (a known id: its stored bag and history;
        another: the anonymous fallback); an unknown item id is an error. For tables of many
        rows (a reranker's training lists): ids are looked up once each, the scores in batches."""
        rows: List[int] = []
        for u in user_ids:
            rows.append(self.users.user_index.get(u, -1))
        cols: List[int] = []
        for item in item_ids:
            ix = self.item_index.get(item, -1)
            if ix < 0:
                raise ValueError("unknown item id '" + item + "'")
            cols.append(ix)
        user_row = torch.tensor(rows, dtype=torch.int64)
        item_col = torch.tensor(cols, dtype=torch.int64)
        out: List[torch.Tensor] = []
        with torch.no_grad():
            for s in range(0, users.shape[0], 16384):
                ur = user_row[users[s:s + 16384]]
                ix = item_col[items[s:s + 16384]]
                known = ur >= 0
                r = ur.clamp(min=0)
                u = torch.where(known.unsqueeze(1), self.user_vectors.index_select(0, r),
                                self.unknown_user_vector.unsqueeze(0))
                off_items, off_values = torch.zeros(u.shape[0], 0, dtype=torch.int64), torch.zeros(u.shape[0], 0)
                if self.scorer.has_offsets():
                    h = self._stored_histories(r, known)
                    off_items, off_values = self.scorer.offsets(h, history_mask(h))
                out.append(self.scorer.these_items(u, self._item_vectors(ix).unsqueeze(1),
                                                   self.item_bias.index_select(0, ix).unsqueeze(1), ix.unsqueeze(1),
                                                   off_items, off_values)[:, 0])
        return torch.cat(out) if len(out) > 0 else torch.zeros(0)

    def _stored_histories(self, rows: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """The stored history bags of users ``rows`` [B] (empty where not ``known``), padded: [B, H]."""
        off = self.users.history_offsets
        start = off.index_select(0, rows)
        lens = torch.where(known, off.index_select(0, rows + 1) - start, torch.zeros_like(start))
        width = max(1, int(lens.max()) if lens.numel() > 0 else 1)
        col = torch.arange(width).unsqueeze(0)
        valid = col < lens.unsqueeze(1)
        if self.users.history_items.numel() == 0:
            return torch.zeros(rows.shape[0], width, dtype=torch.int64)
        pos = (start.unsqueeze(1) + col).clamp(max=self.users.history_items.shape[0] - 1)
        h = self.users.history_items[pos].to(torch.int64)
        return torch.where(valid, h, torch.zeros_like(h))

    def forward(self, user_tokens: torch.Tensor, user_weights: torch.Tensor, history: torch.Tensor,
                history_weights: torch.Tensor) -> torch.Tensor:
        """Batch scores over the catalogue: token bags [B, Tu], histories [B, H] -> [B, N]."""
        u = self.user_tower(user_tokens, user_weights, history, history_weights)
        off_items, off_values = self.scorer.offsets(history, history_weights)
        return self.scorer.all_items(u, self.item_table(), self.item_bias, off_items, off_values)
