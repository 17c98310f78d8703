"""model.pt2: the scoring graph through ``torch.export`` (tensors in, tensors out), the
``lookups.json`` beside it, and ``Pt2Recommender``, a reference caller in Python.

The graph takes the user's token bag and history bag and returns the top-k items; it holds
no strings. ``lookups.json`` has what any caller needs to build the inputs: the users'
vocabulary (as ``Vocabulary.state()``), the catalogue's item ids, and the known users'
stored bags and histories. ``Pt2Recommender`` builds them with the same ``UserResolver``
(and so the same Tokenizer) that model.ts runs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from rankers.artifact.schema import LOOKUPS_FORMAT, ExportBundle
from rankers.artifact.users import UserResolver
from rankers.model.layers import export_friendly
from rankers.model.score import Scorer
from rankers.model.tokenizer import Tokenizer, Vocabulary
from rankers.model.two_tower import history_mask

INPUTS = {"user_tokens": "int64 [B, Tu], 0 = padding", "user_weights": "float32 [B, Tu]",
          "history": "int64 [B, H], item index + 1, 0 = padding, each item at most once",
          "history_weights": "float32 [B, H], 1 = use, 0 = padding (a mask)"}
OUTPUTS = {"scores": "float32 [B, k], best first", "indices": "int64 [B, k], into item_ids"}


class TopKScorer(nn.Module):
    """The graph in ``model.pt2``: user token bags -> the k best items of the catalogue.

    Inputs: user_tokens int64 [B, Tu] (0 = padding), user_weights float32 [B, Tu],
    history int64 [B, H] (item index + 1, 0 = padding, each item at most once), history_weights
    float32 [B, H] (1 = use the item, 0 = padding: a mask, the user tower normalises the bag).
    Outputs: scores float32 [B, k] and item indices int64 [B, k], best first.
    """

    def __init__(self, user_tower: nn.Module, scorer: Scorer, item_vectors: torch.Tensor, item_bias: torch.Tensor,
                 k: int):
        super().__init__()
        self.user_tower = export_friendly(user_tower)
        self.scorer = scorer
        self.register_buffer("item_matrix", item_vectors.t().contiguous())  # [D, N], as model.ts's fp32 scan
        self.register_buffer("item_bias", item_bias.contiguous())           # [N], the Scorer's item terms in
        self.k = int(k)

    def forward(self, user_tokens: torch.Tensor, user_weights: torch.Tensor, history: torch.Tensor,
                history_weights: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        u = self.user_tower(user_tokens, user_weights, history, history_weights)
        off_items, off_values = self.scorer.offsets(history, history_weights)
        top = torch.topk(self.scorer.all_items(u, self.item_matrix, self.item_bias, off_items, off_values), self.k)
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


def baked_k(k: int, n_items: int) -> int:
    """The k baked into model.pt2: as asked, capped at the catalogue size."""
    k = min(int(k), n_items)
    if k < 1:
        raise ValueError(f"pt2_k must be >= 1, got {k}")
    return k


KNOWN_USERS = "known_users.npz"


def write_lookups(out_dir: Path, bundle: ExportBundle, k: int) -> None:
    """What a model.pt2 caller needs to turn strings into its input tensors: ``lookups.json``
    (the users' vocabulary, the item ids, k) and, in binary, ``known_users.npz`` (ids, the
    stored token bags [U, Tu], the history bags as CSR: history_offsets [U + 1],
    history_items [S], item index + 1)."""
    with open(out_dir / "lookups.json", "w") as f:
        json.dump({"format": LOOKUPS_FORMAT, "k": int(k), "vocabulary": bundle.user_vocab.state(),
                   "item_ids": list(bundle.item_ids), "known_users": KNOWN_USERS}, f)
    np.savez(out_dir / KNOWN_USERS, ids=np.asarray(bundle.user_ids, dtype=str),
             tokens=np.asarray(bundle.user_tokens, np.int32), weights=np.asarray(bundle.user_weights, np.float32),
             history_offsets=bundle.history.offsets.astype(np.int64),
             history_items=bundle.history.values.astype(np.int32))


class Pt2Recommender:
    """``recommend`` over ``model.pt2`` + ``lookups.json`` in an export directory (no TorchScript)."""

    def __init__(self, export_dir: Union[str, Path]):
        d = Path(export_dir)
        for name in ("model.pt2", "lookups.json"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} not found; was the export written with pt2=True?")
        lk = json.loads((d / "lookups.json").read_text())
        if lk.get("format") != LOOKUPS_FORMAT:
            raise ValueError(f"{d / 'lookups.json'}: format {lk.get('format')!r}, expected {LOOKUPS_FORMAT!r}")
        self.k = int(lk["k"])
        self.item_ids: List[str] = lk["item_ids"]
        with np.load(d / lk["known_users"]) as ku:
            self.users = UserResolver(Tokenizer(Vocabulary.from_state(lk["vocabulary"])), ku["ids"].tolist(),
                                      ku["tokens"], ku["weights"], ku["history_offsets"], ku["history_items"],
                                      self.item_ids)
        self.program = torch.export.load(str(d / "model.pt2")).module()

    def encode(self, user_id: str, features: Dict[str, List[str]]) -> Tuple[torch.Tensor, ...]:
        """-> user_tokens int64 [1, Tu], user_weights float32 [1, Tu], history int64 [1, H],
        history_weights float32 [1, H] (the four inputs of model.pt2)."""
        tokens, weights, history = self.users.resolve(user_id, features)
        h = history.unsqueeze(0)
        return tokens.unsqueeze(0), weights.unsqueeze(0), h, history_mask(h)

    def recommend(self, user_id: str, features: Dict[str, List[str]], k: int,
                  exclude: Sequence[str] = ()) -> Tuple[List[str], List[float]]:
        """Top-k ids and scores, as model.ts's ``recommend``; k + len(exclude) may not pass the baked k."""
        excluded = {self.users.item_index[i] for i in exclude if i in self.users.item_index}
        if not 1 <= k or min(k + len(excluded), len(self.item_ids)) > self.k:
            raise ValueError(f"k + excluded items must be in [1, {self.k}] (model.pt2 was exported with k={self.k}); "
                             f"got k={k}, {len(excluded)} excluded")
        with torch.no_grad():
            scores, idx = self.program(*self.encode(user_id, features))
        keep = [(i, s) for i, s in zip(idx[0].tolist(), scores[0].tolist()) if i not in excluded][:k]
        return [self.item_ids[i] for i, _ in keep], [s for _, s in keep]
