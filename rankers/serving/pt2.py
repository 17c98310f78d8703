"""A reference caller of ``model.pt2``: strings -> token tensors -> torch.export program.

``model.pt2`` (see ``rankers.export.TopKScorer``) takes token bags and returns the top-k
item indices; everything string-valued lives in ``lookups.json`` beside it. This class
does what any caller (another language, another service) has to do, in the same order
as ``Recommender.user_vector`` in model.ts, so both give the same ranking:

1. A known user id (``known_users.ids``) starts from its stored bag (``tokens``/``weights``,
   drop zeros) and ``history``; an unknown id starts from the id field's ``<oov>`` token
   with weight 1 and an empty history.
2. Each feature given in the request replaces that field's stored tokens: its values map
   through ``user_vocab[field]`` (unknown values -> ``<oov>``; ``multi`` fields split on
   ``sep``; ``numeric`` values become ``b<j>``, j = number of ``boundaries`` <= value), and
   each of the field's tokens gets weight 1 / (number of tokens of that field).
3. The reserved feature ``history`` (item ids) replaces the stored history: item index + 1.
4. History weights are a mask: 1 on history entries, 0 on padding (the graph normalises).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import torch

HISTORY_FIELD = "history"


class ExportedRecommender:
    """``recommend`` over ``model.pt2`` + ``lookups.json`` in an export directory (no TorchScript)."""

    def __init__(self, export_dir: Union[str, Path]):
        d = Path(export_dir)
        for name in ("model.pt2", "lookups.json"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} not found; was the export written with pt2=True?")
        lk = json.loads((d / "lookups.json").read_text())
        self.k = int(lk["k"])
        self.oov = lk["oov"]
        self.id_field = lk["id_field"]
        self.features = {f["name"]: f for f in lk["features"]}
        self.vocab: Dict[str, Dict[str, int]] = lk["user_vocab"]
        self.item_ids: List[str] = lk["item_ids"]
        self.item_index = {s: i for i, s in enumerate(self.item_ids)}
        ku = lk["known_users"]
        self.user_row = {s: i for i, s in enumerate(ku["ids"])}
        self.user_tokens, self.user_weights, self.user_history = ku["tokens"], ku["weights"], ku["history"]
        self.token_field: Dict[int, str] = {t: f for f, v in self.vocab.items() for t in v.values()}
        self.program = torch.export.load(str(d / "model.pt2")).module()

    def _field_tokens(self, name: str, values: Sequence[str]) -> List[int]:
        spec, vocab = self.features[name], self.vocab[name]
        out: List[int] = []
        for raw in values:
            vals = [v for v in raw.split(spec["sep"]) if v != ""] if spec["kind"] == "multi" else [raw]
            for v in vals:
                if spec["kind"] == "numeric":
                    x = float(v)
                    out.append(vocab["b" + str(sum(1 for e in spec["boundaries"] if x >= e))])
                else:
                    out.append(vocab.get(v, vocab[self.oov]))
        return out

    def encode(self, user_id: str, features: Dict[str, List[str]]) -> Tuple[torch.Tensor, ...]:
        """-> user_tokens int64 [1, Tu], user_weights float32 [1, Tu], history int64 [1, H],
        history_weights float32 [1, H] (the four inputs of model.pt2)."""
        unknown = [n for n in features if n not in self.features and n != HISTORY_FIELD]
        if unknown:
            raise ValueError(f"unknown user feature(s) {unknown}; known: {sorted(self.features)} + {HISTORY_FIELD}")
        row = self.user_row.get(user_id)
        if row is not None:
            bag = [(t, w) for t, w in zip(self.user_tokens[row], self.user_weights[row])
                   if t > 0 and self.token_field.get(t) not in features]
            hist = list(self.user_history[row])
        else:
            bag = [(self.vocab[self.id_field][self.oov], 1.0)]
            hist = [0]
        for name in self.features:  # the field order of the model, not of the request
            if name in features:
                toks = self._field_tokens(name, features[name])
                bag += [(t, 1.0 / len(toks)) for t in toks]
        if HISTORY_FIELD in features:
            hist = [0] + [self.item_index[i] + 1 for i in features[HISTORY_FIELD] if i in self.item_index]
        if not bag:
            bag = [(0, 0.0)]
        tokens = torch.tensor([[t for t, _ in bag]], dtype=torch.int64)
        weights = torch.tensor([[w for _, w in bag]], dtype=torch.float32)
        h = torch.tensor([hist], dtype=torch.int64)
        return tokens, weights, h, (h > 0).to(torch.float32)  # a mask: the graph normalises the bag

    def recommend(self, user_id: str, features: Dict[str, List[str]], k: int,
                  exclude: Sequence[str] = ()) -> Tuple[List[str], List[float]]:
        """Top-k ids and scores, as ``Recommender.recommend``; k + len(exclude) may not pass the baked k."""
        excluded = {self.item_index[i] for i in exclude if i in self.item_index}
        if not 1 <= k or min(k + len(excluded), len(self.item_ids)) > self.k:
            raise ValueError(f"k + excluded items must be in [1, {self.k}] (model.pt2 was exported with k={self.k}); "
                             f"got k={k}, {len(excluded)} excluded")
        with torch.no_grad():
            scores, idx = self.program(*self.encode(user_id, features))
        keep = [(i, s) for i, s in zip(idx[0].tolist(), scores[0].tolist()) if i not in excluded][:k]
        return [self.item_ids[i] for i, _ in keep], [s for _, s in keep]
