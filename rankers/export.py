"""Self-contained serving artifacts in one directory: ``model.ts``, ``model.pt2``,
``lookups.json`` and ``metadata.json``.

Production loads ``model.ts`` with ``torch.jit.load`` alone (no ``rankers`` import). The
module holds the precomputed item vectors and biases, the vocabularies (string -> token),
the numeric bucket boundaries, the known users' token bags and histories, and the user
tower, and exposes ``recommend`` and ``score``.

``model.pt2`` is the same scoring graph through ``torch.export`` (TorchScript is deprecated
from torch 2.13): tensors in, tensors out, token bags -> top-k item indices and scores. It
does no string handling; ``lookups.json`` holds what a caller needs to build its inputs
(vocabularies, bucket boundaries, item ids by index, known users' bags); see
the README (Serving) and ``rankers.serving.pt2`` for a reference caller.

An export is written to a temporary directory beside the target and renamed into place,
so a loader never sees half a model.
"""
import datetime as _dt
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rankers.data.features import OOV, EntityEncoder
from rankers.models.two_tower import bag_membership

FORMAT = "rankers.export/1"
LOOKUPS_FORMAT = "rankers.lookups/1"
HISTORY_FIELD = "history"  # reserved feature name: a list of item ids the user interacted with
PT2_K = 100  # top-k baked into model.pt2 (torch.export needs a static k); callers slice
SCANS = ("auto", "fp16", "fp32")  # the export's scan choices; see scan_plan
SCAN_MIN_ITEMS = 16384  # below this, one exact pass over the catalogue is already cheap
FP16_MAX = 60000.0  # largest |item vector entry| stored in fp16 (its maximum is 65504)


class Recommender(nn.Module):
    """The exported scorer. Strings in, strings out; see ``recommend`` and ``score``."""

    # Class-level annotations: TorchScript needs them for containers that may be empty.
    item_ids: List[str]
    item_index: Dict[str, int]
    user_index: Dict[str, int]
    vocab: Dict[str, Dict[str, int]]
    id_field: str
    feature_names: List[str]
    kinds: Dict[str, str]
    seps: Dict[str, str]
    boundaries: Dict[str, List[float]]
    version: str
    oov: str
    repeat: float
    approximate: bool
    scan_precision: str
    max_item_norm: float
    exact_fallbacks: int

    def __init__(self, user_tower: nn.Module, item_vectors: torch.Tensor, item_bias: torch.Tensor,
                 item_ids: List[str], user_encoder: EntityEncoder, known_users: List[str],
                 user_tokens: torch.Tensor, user_weights: torch.Tensor, history: torch.Tensor, version: str,
                 repeat: float = 0.0, scan: str = "fp32"):
        super().__init__()
        self.user_tower = user_tower
        self.repeat = float(repeat)  # score offset of items in the user's history bag (TwoTower.repeat)
        self.register_buffer("item_bias", item_bias.contiguous())           # [N]
        # recommend's scan, and the float32 table in the layout that suits it:
        # "fp32": stored [D, N], so one user's scan is a column-major gemv that streams the
        #   table once with full-width FMAs ([N, D] makes it N 64-long dot products, ~2x slower);
        # "fp16": a half-precision copy does the scan (half the bytes to stream); its best
        #   candidates are re-scored exactly from rows [N, D], which gather faster than columns.
        if scan not in ("fp32", "fp16"):
            raise ValueError(f"scan must be 'fp32' or 'fp16', got {scan!r}")
        self.scan_precision = scan
        self.approximate = scan == "fp16"
        n, dim = item_vectors.shape
        if self.approximate:
            self.fp16_scan = _Fp16Scan(item_vectors, item_bias)
            self.register_buffer("item_rows", item_vectors.contiguous())   # [N, D]
            self.register_buffer("item_matrix", torch.zeros(dim, 0))      # unused: one float32 copy is enough
        else:
            self.fp16_scan = nn.Identity()  # never called: TorchScript needs the attribute typed
            self.register_buffer("item_rows", torch.zeros(0, dim))        # unused
            self.register_buffer("item_matrix", item_vectors.t().contiguous())  # [D, N]
        # over [x_i, b_i], the rows the fp16 scan multiplies by [u, 1]
        self.max_item_norm = float(torch.cat([item_vectors, item_bias.unsqueeze(1)], 1).norm(dim=1).max()) if n else 0.0
        self.exact_fallbacks = 0  # recommend calls whose fp16 candidates could not prove the top-k
        self.register_buffer("user_tokens", user_tokens)                  # [U, Tu]
        self.register_buffer("user_weights", user_weights)                # [U, Tu]
        self.register_buffer("history", history)                          # [U, H], item index + 1
        # A known user's vector without feature overrides depends on the export alone: computed
        # once here, it saves the tower per request (and is smaller than the bags it comes from).
        with torch.no_grad():
            self.register_buffer("user_vectors", _known_user_vectors(user_tower, user_tokens, user_weights, history))
        self.item_ids = list(item_ids)
        self.item_index = {s: i for i, s in enumerate(item_ids)}
        self.user_index = {s: i for i, s in enumerate(known_users)}
        self.vocab = {f: dict(v) for f, v in user_encoder.vocab.items()}
        self.id_field = user_encoder.id_field
        self.feature_names = [s.name for s in user_encoder.specs]
        self.kinds = {s.name: s.kind for s in user_encoder.specs}
        self.seps = {s.name: s.sep for s in user_encoder.specs}
        self.boundaries = {k: list(v) for k, v in user_encoder.boundaries.items()}
        # token -> field position (0 = id field), to replace one field of a known user's bag
        field_of = torch.full((user_encoder.n_tokens,), -1, dtype=torch.int64)
        for pos, name in enumerate([user_encoder.id_field] + self.feature_names):
            for tok in user_encoder.vocab[name].values():
                field_of[tok] = pos
        self.register_buffer("token_field", field_of)
        self.version = version
        self.oov = OOV

    def _field_tokens(self, name: str, values: List[str]) -> List[int]:
        vocab = self.vocab[name]
        kind = self.kinds[name]
        out: List[int] = []
        for raw in values:
            vals: List[str] = [raw]
            if kind == "multi":
                vals = []
                for v in raw.split(self.seps[name]):
                    if v != "":
                        vals.append(v)
            for v in vals:
                if kind == "numeric":
                    x = float(v)
                    b = 0
                    for edge in self.boundaries[name]:
                        if x >= edge:
                            b += 1
                    out.append(vocab["b" + str(b)])
                else:
                    out.append(vocab.get(v, vocab[self.oov]))
        return out

    @torch.jit.export
    def user_vector(self, user_id: str, features: Dict[str, List[str]]) -> torch.Tensor:
        """One user's vector [D]: a known id uses its stored bag and history; fields given in
        ``features`` replace the stored ones; an unknown id scores from features alone."""
        return self.user_state(user_id, features)[0]

    def user_state(self, user_id: str, features: Dict[str, List[str]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(vector [D], history bag [H] as item index + 1, 0 = padding) of one user."""
        for name in features.keys():
            if name not in self.kinds and name != "history":
                raise ValueError("unknown user feature '" + name + "'; known: " + ", ".join(self.feature_names)
                                 + ", history")
        row = self.user_index.get(user_id, -1)
        if row >= 0 and len(features) == 0:
            return self.user_vectors[row], self.history[row]
        if row >= 0:
            tok_t = self.user_tokens[row]
            w_t = self.user_weights[row]
            keep = tok_t > 0
            field = self.token_field[tok_t]
            for pos in range(len(self.feature_names)):
                if self.feature_names[pos] in features:
                    keep = keep & (field != pos + 1)
            tok_t = tok_t[keep]
            w_t = w_t[keep]
            h = self.history[row]
        else:
            tok_t = torch.tensor([self.vocab[self.id_field][self.oov]], dtype=torch.int64)
            w_t = torch.ones(1, dtype=torch.float32)
            h = torch.zeros(1, dtype=torch.int64)
        toks: List[int] = []
        wts: List[float] = []
        for name in self.feature_names:
            if name in features:
                ft = self._field_tokens(name, features[name])
                for tok in ft:
                    toks.append(tok)
                    wts.append(1.0 / len(ft))
        if len(toks) > 0:
            tok_t = torch.cat([tok_t, torch.tensor(toks, dtype=torch.int64)])
            w_t = torch.cat([w_t, torch.tensor(wts, dtype=torch.float32)])
        if "history" in features:
            hist: List[int] = [0]
            for item in features["history"]:
                if item in self.item_index:
                    hist.append(self.item_index[item] + 1)
            h = torch.tensor(hist, dtype=torch.int64)
        if tok_t.numel() == 0:
            tok_t = torch.zeros(1, dtype=torch.int64)
            w_t = torch.zeros(1, dtype=torch.float32)
        hw = (h > 0).to(torch.float32)  # a mask; the user tower normalises the bag
        return self.user_tower(tok_t.unsqueeze(0), w_t.unsqueeze(0), h.unsqueeze(0), hw.unsqueeze(0))[0], h

    def _add_repeat(self, scores: torch.Tensor, bag: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """scores [K] of ``items`` [K] plus the repeat term for those in ``bag`` [H] (item indices)."""
        if self.repeat != 0.0 and bag.numel() > 0:
            scores = scores + self.repeat * torch.isin(items, bag).to(scores.dtype)
        return scores

    def _adjusted(self, scores: torch.Tensor, bag: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
        """Catalogue scores [N], in place: the repeat term on ``bag`` [H] and -inf on ``excluded``
        [E] (item indices), each by index: no pass over the catalogue."""
        if self.repeat != 0.0:
            scores[bag] = scores[bag] + self.repeat
        if excluded.numel() > 0:
            scores.index_fill_(0, excluded, float("-inf"))
        return scores

    @torch.jit.export
    def item_table(self) -> torch.Tensor:
        """The float32 item vectors as [D, N] (a transposed view of the rows with the fp16 scan)."""
        return self.item_rows.t() if self.approximate else self.item_matrix

    def _item_columns(self, ix: torch.Tensor) -> torch.Tensor:
        """The float32 vectors of items ``ix`` [K] as [D, K], gathered from the stored layout
        (index_select on the transposed view of the rows would copy the whole table first)."""
        if self.approximate:
            return self.item_rows.index_select(0, ix).t()
        return self.item_matrix.index_select(1, ix)

    @torch.jit.export
    def catalogue_scores(self, u: torch.Tensor) -> torch.Tensor:
        """Exact scores [N] of every item for one user vector u [D]."""
        # mm, then add: TorchScript's optimising executor decomposes addmm into these two, and
        # the fused form rounds differently; this way both executors give the same bits.
        return torch.mm(u.unsqueeze(0), self.item_table())[0] + self.item_bias

    @torch.jit.export
    def recommend(self, user_id: str, features: Dict[str, List[str]], k: int,
                  exclude: List[str]) -> Tuple[List[str], List[float]]:
        """Top-k item ids and scores for one user; ``exclude`` ids never appear (unknown ids ignored)."""
        if k <= 0:
            raise ValueError("k must be >= 1, got " + str(k))
        with torch.no_grad():
            u, h = self.user_state(user_id, features)
            bag = h[h > 0] - 1 if self.repeat != 0.0 else h[:0]  # only the repeat term reads it
            excluded: Dict[int, bool] = {}  # a set: repeated ids count once
            for item in exclude:
                ix = self.item_index.get(item, -1)
                if ix >= 0:
                    excluded[ix] = True
            ex = torch.tensor(list(excluded.keys()), dtype=torch.int64)
            k = min(k, self.item_bias.shape[0] - len(excluded))
            values, index = self.top_items(u, bag, ex, k)
            idx: List[int] = index.tolist()
            vals: List[float] = values.tolist()
            ids = [self.item_ids[i] for i in idx]
            return ids, vals

    @torch.jit.export
    def top_items(self, u: torch.Tensor, bag: torch.Tensor, excluded: torch.Tensor,
                  k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k best items for a user vector u [D], with the repeat term on ``bag`` [H]
        (item indices) and without ``excluded`` [E] (unique item indices): (scores [k],
        indices [k]), best first; k at most the items left.

        With the fp16 scan, its m = k + margin best are re-scored exactly. Every other item
        scores at most its fp16 score + e (``scan_error``), so the exact top-k is among them
        whenever the m-th fp16 score is below the k-th by more than 2e; when it is not (many
        near-equal scores), one exact pass over the catalogue answers instead.
        """
        if k <= 0:
            return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
        if not self.approximate:
            return self._exact_top(u, bag, excluded, k)
        scores = self._adjusted(self.fp16_scan(u), bag, excluded)
        avail = scores.shape[0] - excluded.numel()
        m = min(k + max(16, k // 4), avail)
        values, cand = topk_blocked(scores, m)
        if m < avail and float(values[m - 1]) >= float(values[k - 1]) - 2.0 * self.scan_error(u):
            self.exact_fallbacks += 1
            return self._exact_top(u, bag, excluded, k)
        exact = self._add_repeat(torch.mv(self.item_rows.index_select(0, cand), u)
                                 + self.item_bias.index_select(0, cand), bag, cand)
        top = torch.topk(exact, k)
        return top.values, cand[top.indices]

    def scan_error(self, u: torch.Tensor) -> float:
        """A bound on |fp16 scan score - exact score| for any item, for the user vector u [D].

        The scan multiplies [u, 1] by the rows [x_i, b_i] rounded to fp16. Rounding moves an
        entry by at most 2^-11 of itself (normal range) or 2^-25 (subnormal), so a score moves
        by at most 2^-11 |u'|.|x'| + 2^-25 |u'|_1, with |u'|.|x'| <= ||u'|| max ||x'|| and
        |u'|_1 <= sqrt(D + 1) ||u'||; the rest covers float32 accumulation in both scans and
        the repeat term's addition.
        """
        norm = float(u.norm()) + 1.0  # ||[u, 1]|| <= ||u|| + 1
        dim = u.shape[0] + 1
        # |u'|_1 <= sqrt(D + 1) ||u'||: one reduction over u, not two
        return (norm * self.max_item_norm * (2.0 ** -11 + 2.0 * dim * 2.0 ** -24)
                + norm * dim ** 0.5 * 2.0 ** -25 + abs(self.repeat) * 2.0 ** -22)

    def _exact_top(self, u: torch.Tensor, bag: torch.Tensor, excluded: torch.Tensor,
                   k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k best by one exact pass over the catalogue (arguments as ``top_items``)."""
        return topk_blocked(self._adjusted(self.catalogue_scores(u), bag, excluded), k)

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
            ix = torch.tensor(idx, dtype=torch.int64)
            out: List[float] = self._add_repeat(torch.mm(u.unsqueeze(0), self._item_columns(ix))[0]
                                                + self.item_bias[ix], h[h > 0] - 1, ix).tolist()
            return out

    def forward(self, user_tokens: torch.Tensor, user_weights: torch.Tensor, history: torch.Tensor,
                history_weights: torch.Tensor) -> torch.Tensor:
        """Batch scores over the catalogue: token bags [B, Tu], histories [B, H] -> [B, N]."""
        u = self.user_tower(user_tokens, user_weights, history, history_weights)
        return _with_repeat(u @ self.item_table() + self.item_bias, history, history_weights, self.repeat)


def topk_blocked(s: torch.Tensor, m: int, groups: int = 16) -> Tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(s, m) for a long s [n]: (values [m], indices [m]), best first.

    Seen as [groups, n / groups], each column's maximum bounds its entries: the m best
    entries lie in the m columns with the best maxima, so one vectorised max over the rows
    and two small top-ks replace the top-k over all n (about 2x faster at n = 50k-100k).
    Equal scores at the m-th place may resolve to a different, equally scored item.
    """
    n = s.shape[0]
    width = n // groups
    if width < 4 * m:
        top = torch.topk(s, m)
        return top.values, top.indices
    grid = s[:groups * width].view(groups, width)
    cols = torch.topk(grid.amax(0), m).indices                                   # [m]
    cand = grid.index_select(1, cols).reshape(-1)                                # [groups * m], row g = group g
    tail = n - groups * width  # the last n % groups entries are candidates as they are
    if tail > 0:
        cand = torch.cat([cand, s[groups * width:]])
    top = torch.topk(cand, m)
    pos = top.indices
    # position p < groups * m is entry (p // m) * width + cols[p % m]; the tail follows
    index = torch.div(pos, m, rounding_mode="floor") * width + cols.index_select(0, torch.remainder(pos, m))
    if tail > 0:
        index = torch.where(pos >= groups * m, pos - groups * m + groups * width, index)
    return top.values, index


class _Fp16Scan(nn.Module):
    """Approximate scores of the whole catalogue from half-precision item vectors,
    accumulated in float32 (fbgemm's packed fp16 GEMM, in torch's CPU builds for x86; it
    splits the catalogue over torch's intra-op threads). Off by at most
    ``Recommender.scan_error``. The bias is a column of the table and u gets a 1, so the
    GEMM adds it rather than a second pass over the scores."""

    def __init__(self, items: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        table = torch.cat([items, bias.unsqueeze(1)], 1).contiguous()  # [N, D + 1]
        # A TorchScript-serialisable object: saved as float32 weights, packed again on load.
        self.packed = torch.ops.quantized.linear_prepack_fp16(table, None)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u [D] -> approximate scores [N]."""
        u1 = torch.cat([u, torch.ones(1, dtype=u.dtype)]).unsqueeze(0)
        return torch.ops.quantized.linear_dynamic_fp16(u1, self.packed)[0]


def _with_repeat(scores: torch.Tensor, history: torch.Tensor, history_weights: torch.Tensor,
                 repeat: float) -> torch.Tensor:
    """scores [B, N] plus ``repeat`` at the items of each user's bag, as TwoTower.repeat_offsets."""
    if repeat == 0.0:
        return scores
    return scores + repeat * bag_membership(history, history_weights, scores.shape[1])


def _known_user_vectors(user_tower: nn.Module, tokens: torch.Tensor, weights: torch.Tensor,
                        history: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The tower over the stored users: bags [U, Tu], histories [U, H] -> vectors [U, D].
    In batches: with MLP layers a row may differ from the per-request computation in the
    last bit (matmul blocking depends on the batch), never more."""
    out = [user_tower(tokens[s:s + chunk], weights[s:s + chunk], history[s:s + chunk],
                      (history[s:s + chunk] > 0).to(torch.float32)) for s in range(0, tokens.shape[0], chunk)]
    return torch.cat(out) if out else torch.zeros(0, 0)


class _DenseBag(nn.Module):
    """``nn.EmbeddingBag(mode="sum")`` as gather, weight and sum.

    torch.export's decomposition of EmbeddingBag guards the batch and bag sizes (>= 2), so
    the pt2 graph uses this equivalent instead. Padding tokens contribute nothing, as in
    EmbeddingBag. input int64 [B, T], per_sample_weights float32 [B, T] -> [B, D].
    """

    def __init__(self, bag: nn.EmbeddingBag):
        super().__init__()
        if bag.mode != "sum":
            raise ValueError(f"model.pt2 supports EmbeddingBag(mode='sum') only, got mode={bag.mode!r}")
        self.weight = bag.weight
        self.padding_idx = -1 if bag.padding_idx is None else int(bag.padding_idx)

    def forward(self, input: torch.Tensor, offsets: Union[torch.Tensor, None] = None,
                per_sample_weights: Union[torch.Tensor, None] = None) -> torch.Tensor:
        w = (input != self.padding_idx).to(self.weight.dtype)
        if per_sample_weights is not None:
            w = w * per_sample_weights
        return (F.embedding(input, self.weight) * w.unsqueeze(-1)).sum(1)


def _export_friendly(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every EmbeddingBag replaced by a ``_DenseBag``."""
    import copy

    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.EmbeddingBag):
                setattr(parent, name, _DenseBag(child))
    return module.eval()


class TopKScorer(nn.Module):
    """The graph in ``model.pt2``: user token bags -> the k best items of the catalogue.

    Inputs: user_tokens int64 [B, Tu] (0 = padding), user_weights float32 [B, Tu],
    history int64 [B, H] (item index + 1, 0 = padding), history_weights float32 [B, H] (1 = use the
    item, 0 = padding: a mask, the user tower normalises the bag).
    Outputs: scores float32 [B, k] and item indices int64 [B, k], best first.
    """

    def __init__(self, user_tower: nn.Module, item_vectors: torch.Tensor, item_bias: torch.Tensor, k: int,
                 repeat: float = 0.0):
        super().__init__()
        self.user_tower = _export_friendly(user_tower)
        self.repeat = float(repeat)
        self.register_buffer("item_matrix", item_vectors.t().contiguous())  # [D, N], as in Recommender
        self.register_buffer("item_bias", item_bias.contiguous())           # [N]
        self.k = int(k)

    def forward(self, user_tokens: torch.Tensor, user_weights: torch.Tensor, history: torch.Tensor,
                history_weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        u = self.user_tower(user_tokens, user_weights, history, history_weights)
        top = torch.topk(_with_repeat(u @ self.item_matrix + self.item_bias, history, history_weights, self.repeat),
                         self.k)
        return top.values, top.indices  # a plain tuple: torch.export cannot serialise return_types.topk


def export_program(scorer: TopKScorer) -> "torch.export.ExportedProgram":
    """torch.export ``scorer`` with the batch, bag and history lengths dynamic."""
    dim = torch.export.Dim
    b, t, h = dim("batch", min=1), dim("tokens", min=1), dim("history", min=1)
    # Example sizes >= 2 so that no dimension specialises to 0 or 1.
    example = (torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3), torch.ones(2, 4, dtype=torch.int64),
               torch.full((2, 4), 0.25))
    with torch.no_grad():
        return torch.export.export(scorer.eval(), example,
                                   dynamic_shapes=({0: b, 1: t}, {0: b, 1: t}, {0: b, 1: h}, {0: b, 1: h}))


def lookups(bundle: dict, k: int) -> dict:
    """What a model.pt2 caller needs to turn strings into its input tensors (``lookups.json``)."""
    ue = EntityEncoder.from_state(bundle["user_encoder"])
    return {
        "format": LOOKUPS_FORMAT, "k": int(k), "oov": OOV, "id_field": ue.id_field,
        "features": [{"name": s.name, "kind": s.kind, "sep": s.sep, "boundaries": list(ue.boundaries.get(s.name, []))}
                     for s in ue.specs],
        "user_vocab": ue.vocab,
        "item_ids": list(bundle["item_ids"]),
        "known_users": {"ids": list(bundle["user_ids"]),
                        "tokens": np.asarray(bundle["user_tokens"]).tolist(),
                        "weights": np.asarray(bundle["user_weights"]).tolist(),
                        "history": np.asarray(bundle["history"]).tolist()},
    }


def bundle_from_data(data) -> dict:
    """What an export needs from RankingData, as plain arrays (saved in checkpoints)."""
    n = data.n_train_users
    return {"item_ids": [str(s) for s in data.item_ids], "user_ids": [str(s) for s in data.user_ids[:n]],
            "user_tokens": data.user_tokens[:n], "user_weights": data.user_weights[:n],
            "history": data.history_full[:n], "item_tokens": data.item_tokens, "item_weights": data.item_weights,
            "user_encoder": data.user_encoder.state(), "item_encoder": data.item_encoder.state()}


def _item_table(net, bundle: dict) -> Tuple[torch.Tensor, torch.Tensor]:
    """Precomputed item vectors [N, D] and biases [N]."""
    net = net.eval()
    with torch.no_grad():
        v, b = net.item_vectors(torch.as_tensor(bundle["item_tokens"]), torch.as_tensor(bundle["item_weights"]))
    return v.detach().clone(), b.detach().clone()


def scan_plan(item_vectors: torch.Tensor, item_bias: torch.Tensor, scan: str = "auto") -> str:
    """The precision of recommend's scan for item vectors [N, D] and biases [N]: "auto" is
    fp16 from SCAN_MIN_ITEMS items on, where this torch has fbgemm and every entry fits
    fp16; fp32 otherwise."""
    if scan not in SCANS:
        raise ValueError(f"export scan must be 'auto', 'fp16' or 'fp32', got {scan!r}")
    if scan == "fp32":
        return scan
    n = item_vectors.shape[0]
    fbgemm = "fbgemm" in torch.backends.quantized.supported_engines
    fits = n == 0 or max(float(item_vectors.abs().max()), float(item_bias.abs().max())) <= FP16_MAX
    if scan == "fp16" and not (fbgemm and fits):
        raise ValueError("export scan='fp16' needs a torch with fbgemm (x86) and item vectors and biases within "
                         f"+-{FP16_MAX:g}; fbgemm={fbgemm}, fits={fits}")
    if scan == "auto":
        scan = "fp16" if n >= SCAN_MIN_ITEMS and fbgemm and fits else "fp32"
    return scan


def build_recommender(net, bundle: dict, version: str, scan: str = "auto") -> torch.jit.ScriptModule:
    """Script a Recommender from a trained TwoTower and an export bundle (``scan``: see
    ``scan_plan``)."""
    v, b = _item_table(net, bundle)
    precision = scan_plan(v, b, scan)
    import copy
    rec = Recommender(copy.deepcopy(net.user_tower).eval(), v, b,
                      bundle["item_ids"], EntityEncoder.from_state(bundle["user_encoder"]), bundle["user_ids"],
                      torch.as_tensor(bundle["user_tokens"]), torch.as_tensor(bundle["user_weights"]),
                      torch.as_tensor(bundle["history"]), version, _repeat(net), precision)
    return torch.jit.script(rec.eval())


def _repeat(net) -> float:
    return 0.0 if getattr(net, "repeat", None) is None else float(net.repeat.detach())


def build_topk_program(net, bundle: dict, k: int = PT2_K) -> "torch.export.ExportedProgram":
    """The model.pt2 program for a trained TwoTower: k is capped at the catalogue size."""
    v, b = _item_table(net, bundle)
    k = min(int(k), v.shape[0])
    if k < 1:
        raise ValueError(f"pt2_k must be >= 1, got {k}")
    return export_program(TopKScorer(net.user_tower, v, b, k, _repeat(net)))


def _atomic_replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished directory into place; an existing one is swapped out, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(net, bundle: dict, out_dir: Union[str, Path], config: Union[dict, None] = None,
           metrics: Union[dict, None] = None, pt2: bool = True, pt2_k: int = PT2_K, scan: str = "auto") -> Path:
    """Write ``out_dir/{model.ts, metadata.json}`` and, with ``pt2``, ``model.pt2`` +
    ``lookups.json`` (top-``pt2_k`` graph), all atomically. ``scan``: the precision of
    model.ts's recommend scan (``scan_plan``). Returns out_dir."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    version = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:12]}"
    ue = EntityEncoder.from_state(bundle["user_encoder"])
    ie = EntityEncoder.from_state(bundle["item_encoder"])
    if HISTORY_FIELD in [s.name for s in ue.specs]:
        raise ValueError(f"user feature name {HISTORY_FIELD!r} is reserved for the history bag; rename the column")
    meta = {
        "format": FORMAT, "version": version, "created": now.isoformat(),
        "n_items": len(bundle["item_ids"]), "n_known_users": len(bundle["user_ids"]), "dim": int(net.dim),
        "user_features": ue.known_values(), "item_features": ie.known_values(),
        "numeric_boundaries": {"user": ue.boundaries, "item": ie.boundaries},
        "reserved_features": {HISTORY_FIELD: "list of item ids the user interacted with (replaces stored history)"},
        "model": dict(net.hparams), "config": config or {}, "metrics": metrics or {},
        "torch_version": torch.__version__, "pt2": None,
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        module = build_recommender(net, bundle, version, scan)
        module.save(str(tmp / "model.ts"))
        meta["scan"] = {"precision": module.scan_precision,
                        "exact": "fp16 candidates are re-scored in float32; the top-k equals an exact scan's"
                        if module.approximate else "float32 scan"}
        if pt2:
            k = min(int(pt2_k), len(bundle["item_ids"]))
            program = build_topk_program(net, bundle, k)
            torch.export.save(program, str(tmp / "model.pt2"))
            with open(tmp / "lookups.json", "w") as f:
                json.dump(lookups(bundle, k), f, default=_json_default)
            meta["pt2"] = {
                "file": "model.pt2", "lookups": "lookups.json", "k": k,
                "inputs": {"user_tokens": "int64 [B, Tu], 0 = padding", "user_weights": "float32 [B, Tu]",
                           "history": "int64 [B, H], item index + 1, 0 = padding",
                           "history_weights": "float32 [B, H], 1 = use, 0 = padding (a mask)"},
                "outputs": {"scores": "float32 [B, k], best first", "indices": "int64 [B, k], into item_ids"},
            }
        with open(tmp / "metadata.json", "w") as f:
            json.dump(meta, f, indent=2, default=_json_default)
        _atomic_replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_checkpoint_net(checkpoint_path: Union[str, Path]):
    """Rebuild the trained TwoTower and the export bundle from a Lightning checkpoint."""
    from rankers.models.two_tower import TwoTower

    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "rankers" not in ckpt:
        raise ValueError(f"{path} is not a rankers checkpoint (no 'rankers' entry); "
                         "it must come from rankers.train / scripts/train.py")
    net = TwoTower(**ckpt["rankers"]["net_hparams"])
    state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval(), ckpt["rankers"]["encoders"]


def export_checkpoint(checkpoint_path: Union[str, Path], out_dir: Union[str, Path], scan: str = "auto") -> Path:
    """Export a checkpoint; the run's config.yaml and metrics.json are attached when found beside it."""
    net, bundle = load_checkpoint_net(checkpoint_path)
    run_dir = Path(checkpoint_path).resolve().parent.parent
    config, metrics = {}, {}
    if (run_dir / "config.yaml").is_file():
        import yaml
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    if (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    return export(net, bundle, out_dir, config=config, metrics=metrics, scan=scan)
