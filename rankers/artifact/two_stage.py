"""The two-stage export: the two-tower model retrieves, the paper's sparse linear model
(ElasticRank) reranks. One ``model.ts`` holds both; production loads it with torch alone.

- ``rerank(user_id, features, candidates, candidate_features) -> (items, scores)``: the given
  candidates (one impression list) ordered by the reranker. The list's feature columns come
  from ``candidate_features`` (column -> one value per candidate), else from the item columns
  stored at export (the item's own facts), and context columns (one value for the list, e.g.
  the user's segment) from ``features``; ``user_id`` and ``item_id`` are columns too. The
  retrieval model's score of each candidate is computed here when the reranker was trained
  with it. The encoding and the within-list scaling are ``rankers.model.list_encoder``'s:
  what training ran.
- ``recommend(user_id, features, k, exclude)``: the retriever's top ``candidates`` (m), reranked
  with the stored item columns, the best k.
- ``score(user_id, features, items)``: the reranker's scores of ``items`` as one list, in their order.

Features of the request go to the stage that reads them (the retriever's user tower, the
reranker's columns, or both); a feature neither reads is an error. Errors are ``ValueError`` (``torch.jit.Error`` in Python), as in model.ts.
"""
import datetime as _dt
import json
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from rankers.artifact.schema import TWO_STAGE_FORMAT
from rankers.model.linear import SparseLinear
from rankers.model.list_encoder import ListEncoder, ListEncoding, scale_within_lists

RETRIEVAL = "retrieval_score"  # the numeric list column that holds the retriever's score of a row


class ListReranker(nn.Module):
    """The trained sparse linear model over encoded list columns: ``forward(columns, numbers, n)``
    -> scores [n] (arguments as ``ListEncoder.encode``)."""

    def __init__(self, encoder: ListEncoder, weight: torch.Tensor, scale: bool):
        super().__init__()
        if weight.shape[0] != encoder.n_features:
            raise ValueError(f"the weights have {weight.shape[0]} features, the encoding {encoder.n_features}")
        self.encoder = encoder
        self.linear = SparseLinear(encoder.n_features)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
        self.scale = bool(scale)

    def forward(self, columns: Dict[str, List[str]], numbers: Dict[str, torch.Tensor], n: int) -> torch.Tensor:
        index, value, row = self.encoder.encode(columns, numbers, n)
        return self.scores(index, value, row, n)

    @torch.jit.export
    def scores(self, index: torch.Tensor, value: torch.Tensor, row: torch.Tensor, n: int) -> torch.Tensor:
        """Scores [n] of one list's encoded rows (COO [nnz]): scaled within the list, then w·x."""
        if self.scale:
            value = scale_within_lists(torch.zeros_like(index), index, value, torch.tensor([n], dtype=torch.int64),
                                       self.encoder.n_features)
        return self.linear(index, value, row, n)


class TwoStage(nn.Module):
    """Args: retriever: a two-tower model.ts (loaded ScriptModule); reranker: ListReranker;
    item_columns: column -> value per catalogue item (the retriever's item order), as strings;
    candidates: m, the retrieved list's length; retrieval_column: the numeric column that holds
    the retriever's score ("" when the reranker does not read it); version: unique per export.
    item_features: the features that read item columns alone, encoded once per catalogue item
    (``encode_table(..., available_only=True)`` of the item table): CSR (offsets [N + 1], index,
    value, feature id [nnz]); a request uses them unless it gives one of their columns itself."""

    version: str
    retrieval_column: str
    item_values: Dict[str, List[str]]
    user_fields: List[str]
    columns: List[str]
    feature_columns: List[List[str]]
    pre_features: List[int]

    def __init__(self, retriever: nn.Module, reranker: ListReranker, item_columns: Dict[str, List[str]],
                 candidates: int, retrieval_column: str, version: str,
                 item_features: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = None):
        super().__init__()
        enc = reranker.encoder
        self.feature_columns = [[c] for c in enc.numeric] + [list(c) for c in enc.cat_columns]
        if item_features is None:
            n_items = int(retriever.item_bias.shape[0])
            item_features = (torch.zeros(n_items + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                             torch.zeros(0), torch.zeros(0, dtype=torch.int64))
        offsets, index, value, owner = item_features
        self.register_buffer("item_feat_offsets", offsets.to(torch.int64))
        self.register_buffer("item_feat_index", index.to(torch.int64))
        self.register_buffer("item_feat_value", value.to(torch.float32))
        self.register_buffer("item_feat_owner", owner.to(torch.int64))
        self.pre_features = sorted(set(owner.tolist()))
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.retriever = retriever
        self.reranker = reranker
        self.item_values = {c: list(v) for c, v in item_columns.items()}
        self.candidates = int(candidates)
        self.retrieval_column = retrieval_column
        self.version = version
        self.user_fields = list(retriever.users.tokenizer.kinds.keys()) + [retriever.users.history_field]
        self.columns = list(reranker.encoder.columns)

    def _split(self, features: Dict[str, List[str]]) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
        """(the retriever's user features, the reranker's context columns) of a request."""
        user: Dict[str, List[str]] = {}
        context: Dict[str, List[str]] = {}
        for name, values in features.items():
            if name in self.user_fields:
                user[name] = values
            if name in self.columns:  # a field both stages read goes to both
                context[name] = values
            if name not in self.user_fields and name not in self.columns:
                raise ValueError("unknown feature '" + name + "'; the retriever knows " + ", ".join(self.user_fields)
                                 + "; the reranker reads " + ", ".join(self.columns))
        return user, context

    def _scores(self, user_id: str, features: Dict[str, List[str]], candidates: List[str],
                candidate_features: Dict[str, List[str]]) -> torch.Tensor:
        n = len(candidates)
        user, context = self._split(features)
        columns: Dict[str, List[str]] = {}
        for name, values in candidate_features.items():
            if name not in self.columns:
                raise ValueError("unknown candidate feature '" + name + "'; the reranker reads "
                                 + ", ".join(self.columns))
            if len(values) != n:
                raise ValueError("candidate feature '" + name + "' has " + str(len(values)) + " values for "
                                 + str(n) + " candidates")
            columns[name] = values
        for name, values in context.items():
            if len(values) > 1:
                raise ValueError("context feature '" + name + "' takes one value for the list, got "
                                 + str(len(values)))
            if name not in columns:
                columns[name] = [values[0] if len(values) == 1 else ""] * n
        if "user_id" not in columns:
            columns["user_id"] = [user_id] * n
        if "item_id" not in columns:
            columns["item_id"] = candidates
        # the per-item features a request does not override, and the stored columns the others read
        use: List[int] = []
        used = torch.zeros(len(self.feature_columns), dtype=torch.bool)
        for f in self.pre_features:
            mine = True
            for c in self.feature_columns[f]:
                if c in columns:
                    mine = False
            if mine:
                use.append(f)
                used[f] = True
        needed: List[str] = []
        for f in range(len(self.feature_columns)):
            if not bool(used[f]):
                for c in self.feature_columns[f]:
                    if c in self.item_values and c not in columns and c not in needed:
                        needed.append(c)
        ix: List[int] = []
        for item in candidates:
            ix.append(self.retriever.item_index.get(item, -1))
        for c in needed:
            table = self.item_values[c]
            cells: List[str] = []
            for i in ix:
                cells.append(table[i] if i >= 0 else "")
            columns[c] = cells
        numbers: Dict[str, torch.Tensor] = {}
        if self.retrieval_column != "" and n > 0:
            numbers[self.retrieval_column] = torch.tensor(self.retriever.score(user_id, user, candidates),
                                                          dtype=torch.float64)
        with torch.no_grad():
            index, value, row = self.reranker.encoder.encode_except(columns, numbers, n, use)
            if len(use) > 0 and n > 0:
                at = torch.tensor(ix, dtype=torch.int64)
                rows = torch.arange(n)[at >= 0]
                at = at[at >= 0]
                start = self.item_feat_offsets[at]
                lens = self.item_feat_offsets[at + 1] - start
                total = int(lens.sum())
                first = torch.repeat_interleave(torch.cumsum(lens, 0) - lens, lens)
                pos = torch.repeat_interleave(start, lens) + torch.arange(total) - first
                keep = used[self.item_feat_owner[pos]]
                pos = pos[keep]
                index = torch.cat([index, self.item_feat_index[pos]])
                value = torch.cat([value, self.item_feat_value[pos]])
                row = torch.cat([row, torch.repeat_interleave(rows, lens)[keep]])
            return self.reranker.scores(index, value, row, n)

    @torch.jit.export
    def rerank(self, user_id: str, features: Dict[str, List[str]], candidates: List[str],
               candidate_features: Dict[str, List[str]]) -> Tuple[List[str], List[float]]:
        """The candidates ordered by the reranker, best first (ties keep their given order)."""
        s = self._scores(user_id, features, candidates, candidate_features)
        order = torch.sort(s, descending=True, stable=True).indices
        idx: List[int] = order.tolist()
        out: List[float] = s[order].tolist()
        return [candidates[i] for i in idx], out

    @torch.jit.export
    def recommend(self, user_id: str, features: Dict[str, List[str]], k: int,
                  exclude: List[str]) -> Tuple[List[str], List[float]]:
        """The retriever's top ``candidates`` for the user, reranked; the best k."""
        if k <= 0:
            raise ValueError("k must be >= 1, got " + str(k))
        user, _ = self._split(features)
        ids, _ = self.retriever.recommend(user_id, user, max(k, self.candidates), exclude)
        none: Dict[str, List[str]] = {}
        items, scores = self.rerank(user_id, features, ids, none)
        return items[:k], scores[:k]

    @torch.jit.export
    def score(self, user_id: str, features: Dict[str, List[str]], items: List[str]) -> List[float]:
        """The reranker's scores of ``items`` as one list (within-list scaling: a score depends
        on the list), in their order."""
        none: Dict[str, List[str]] = {}
        out: List[float] = self._scores(user_id, features, items, none).tolist()
        return out


def load_retriever(path: Union[str, Path]) -> torch.jit.ScriptModule:
    """A two-tower export's model.ts (``path``: the export directory or the file), checked to
    score pairs (exports before the two-stage path lack ``pair_scores``: export again)."""
    p = Path(path)
    f = p / "model.ts" if p.is_dir() else p
    if not f.is_file():
        raise FileNotFoundError(f"retriever: no model.ts at {p} (give a two-tower export directory: "
                                "python scripts/train.py writes <run dir>/export)")
    module = torch.jit.load(str(f), map_location="cpu")
    if not hasattr(module, "pair_scores") or not hasattr(module, "item_index"):
        raise ValueError(f"retriever {f} is not a two-tower model.ts of this version (no pair_scores); "
                         "export it again: python scripts/export.py <checkpoint> <dir>")
    return module


def retrieval_scores(module, users: pd.Series, items: pd.Series) -> np.ndarray:
    """The retriever's scores of table rows (user and item id columns [R]) -> float32 [R]:
    each distinct id looked up once (``pair_scores``)."""
    u_codes, u_ids = pd.factorize(users)
    i_codes, i_ids = pd.factorize(items)
    if (u_codes < 0).any() or (i_codes < 0).any():
        raise ValueError("retrieval scores: a row without a user or item id")
    s = module.pair_scores(pd.Index(u_ids).astype(str).tolist(), pd.Index(i_ids).astype(str).tolist(),
                           torch.from_numpy(u_codes.astype(np.int64)),
                           torch.from_numpy(i_codes.astype(np.int64)))
    return s.numpy().astype(np.float32)


def item_columns(retriever, items: pd.DataFrame, columns: List[str]) -> Dict[str, List[str]]:
    """The reranker's item columns in the retriever's item order, as model.ts receives strings
    (``items``: item_id + those columns; an item missing from it holds empty cells)."""
    from rankers.data.lists import cell_strings

    ids = list(retriever.item_ids)
    pos = pd.Index(items["item_id"].astype(str)).get_indexer(ids)
    out = {}
    for c in columns:
        codes, text = cell_strings(items[c])
        cells = np.where(codes >= 0, text[np.maximum(codes, 0)] if len(text) else "", "").astype(object)
        out[c] = np.where(pos >= 0, cells[np.maximum(pos, 0)], "").astype(object).tolist()
    return out


def item_features(encoder: ListEncoder, retriever, items: pd.DataFrame, columns: List[str]):
    """The features that read item columns alone, encoded once per catalogue item (the table
    path of the one encoding) -> CSR in the retriever's item order: (offsets [N + 1], index,
    value, feature id [nnz]); an item missing from ``items`` has none."""
    from rankers.data.lists import encode_table

    table = items.drop_duplicates("item_id").assign(item_id=lambda d: d["item_id"].astype(str)).set_index("item_id")
    aligned = table[list(columns)].reindex(pd.Index(list(retriever.item_ids))).reset_index(drop=True)
    idx, val, owner = encode_table(encoder, aligned, "the item table", available_only=True)
    keep = idx >= 0
    offsets = np.r_[0, np.cumsum(keep.sum(1))].astype(np.int64)
    return (torch.from_numpy(offsets), torch.from_numpy(idx[keep].astype(np.int64)),
            torch.from_numpy(val[keep].astype(np.float32)),
            torch.from_numpy(np.broadcast_to(owner, idx.shape)[keep].astype(np.int64)))


def build_two_stage(retriever_path: Union[str, Path], encoding: ListEncoding, weight: torch.Tensor, scale: bool,
                    items: Optional[pd.DataFrame], item_cols: List[str], candidates: int, retrieval_column: str,
                    version: str, encode_items: bool = True) -> torch.jit.ScriptModule:
    """Script the two-stage model.ts (arguments as ``TwoStage``; ``items``: the item table the
    stored columns come from; ``encode_items``: store the item-only features encoded per item,
    else every request encodes them from the stored cells: the same scores, slower)."""
    retriever = load_retriever(retriever_path)
    stored = item_columns(retriever, items, item_cols) if items is not None and item_cols else {}
    encoder = ListEncoder(encoding)
    per_item = item_features(encoder, retriever, items, item_cols) if stored and encode_items else None
    reranker = ListReranker(encoder, weight.detach().to(torch.float32), scale)
    module = TwoStage(retriever, reranker, stored, candidates, retrieval_column, version, per_item)
    module.requires_grad_(False)
    return torch.jit.script(module.eval())


def export_two_stage(out_dir: Union[str, Path], retriever_path: Union[str, Path], encoding: ListEncoding,
                     weight: torch.Tensor, scale: bool, items: Optional[pd.DataFrame], item_cols: List[str],
                     candidates: int, retrieval_column: str, config: Optional[dict] = None,
                     metrics: Optional[dict] = None, encode_items: bool = True) -> Path:
    """Write ``out_dir/{model.ts, metadata.json, linear.json}`` atomically (temp dir + rename)."""
    from rankers.artifact.writer import _json_default, atomic_dir

    now = _dt.datetime.now(_dt.timezone.utc)
    version = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:12]}"
    w = weight.detach().to(torch.float32)
    nz = torch.nonzero(w).flatten()
    with atomic_dir(out_dir) as tmp:
        module = build_two_stage(retriever_path, encoding, w, scale, items, item_cols, candidates, retrieval_column,
                                 version, encode_items)
        module.save(str(tmp / "model.ts"))
        names = encoding.names()
        linear = {"format": "rankers.linear/1", "n_features": encoding.n_features, "index": nz.tolist(),
                  "weight": w[nz].tolist(), "names": [names[i] for i in nz.tolist()],
                  "scale": "list" if scale else "none", "encoding": encoding.state()}
        meta = {"format": TWO_STAGE_FORMAT, "version": version, "created": now.isoformat(),
                "retriever": str(Path(retriever_path).resolve()), "candidates": int(candidates),
                "n_items": int(module.retriever.item_bias.shape[0]),
                "retrieval_column": retrieval_column, "columns": encoding.columns,
                "stored_item_columns": list(item_cols) if items is not None else [],
                "nonzeros": int(nz.numel()), "n_features": encoding.n_features, "config": config or {},
                "metrics": metrics or {}, "torch_version": torch.__version__}
        for name, obj in (("linear.json", linear), ("metadata.json", meta)):
            with open(tmp / name, "w") as f:
                json.dump(obj, f, indent=2, default=_json_default)
    return out_dir
