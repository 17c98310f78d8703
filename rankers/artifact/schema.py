"""The export's formats, reserved names and the bundle contract.

Cheap to import (no model code, no pandas): the serving layer reads its constants.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List

import numpy as np

from rankers.data.ragged import Ragged

if TYPE_CHECKING:
    from rankers.model.tokenizer import Vocabulary

FORMAT = "rankers.export/2"  # metadata.json "format"; /2: feature descriptions by kind, anonymous fallback
TWO_STAGE_FORMAT = "rankers.two_stage/1"  # metadata.json "format" of a two-stage export (retriever + reranker)
LOOKUPS_FORMAT = "rankers.lookups/2"
HISTORY_FIELD = "history"  # reserved feature name: a list of item ids the user interacted with
PT2_K = 100  # top-k baked into model.pt2 (torch.export needs a static k); callers slice
CHECKPOINT = "checkpoint.pt"  # the weights and the bundle, in a checkpoint's layout: what init_from= reads
SCANS = ("auto", "fp16", "fp32")  # model.ts's catalogue scan; see rankers.artifact.scan.scan_plan


@dataclass
class ExportBundle:
    """What an export needs besides the trained weights (saved in checkpoints as ``state()``).

    item_ids: str [N] in catalogue order; user_ids: str [U], the known users.
    user_tokens int64 / user_weights float32 [U, Tu]: the known users' token bags (tokenizer order);
    history: their history bags, U rows of item index + 1 (CSR: a row per user, no padding).
    item_tokens int64 / item_weights float32 [N, Ti]: the items' token bags.
    user_vocab / item_vocab: the fitted vocabularies.
    """

    item_ids: List[str]
    user_ids: List[str]
    user_tokens: np.ndarray
    user_weights: np.ndarray
    history: Ragged
    item_tokens: np.ndarray
    item_weights: np.ndarray
    user_vocab: "Vocabulary"
    item_vocab: "Vocabulary"

    def __post_init__(self):
        n, u = len(self.item_ids), len(self.user_ids)
        checks = {"user_tokens": (self.user_tokens, u), "user_weights": (self.user_weights, u),
                  "item_tokens": (self.item_tokens, n), "item_weights": (self.item_weights, n)}
        for name, (a, rows) in checks.items():
            if np.ndim(a) != 2 or len(a) != rows:
                raise ValueError(f"ExportBundle.{name} must be 2-D with {rows} rows, got shape {np.shape(a)}")
        if len(self.history) != u:
            raise ValueError(f"ExportBundle.history must have {u} rows, got {len(self.history)}")
        if np.shape(self.user_tokens) != np.shape(self.user_weights):
            raise ValueError("ExportBundle.user_tokens and user_weights differ in shape")
        if np.shape(self.item_tokens) != np.shape(self.item_weights):
            raise ValueError("ExportBundle.item_tokens and item_weights differ in shape")
        if HISTORY_FIELD in [s.name for s in self.user_vocab.specs]:
            raise ValueError(f"user feature name {HISTORY_FIELD!r} is reserved for the history bag; rename the column")

    def state(self) -> dict:
        """The state checkpoints carry: ids and vocabularies as arrays (a checkpoint is pickled
        object by object, so a list of a million ids costs seconds at every save, an array one
        buffer)."""
        return {"item_ids": _id_array(self.item_ids), "user_ids": _id_array(self.user_ids),
                "user_tokens": self.user_tokens, "user_weights": self.user_weights,
                "history_offsets": self.history.offsets, "history_values": self.history.values,
                "item_tokens": self.item_tokens, "item_weights": self.item_weights,
                "user_vocab": _packed(self.user_vocab.state()), "item_vocab": _packed(self.item_vocab.state())}

    @classmethod
    def from_state(cls, st: dict) -> "ExportBundle":
        """From ``state()`` (or the lists and dicts of checkpoints written before it packed them)."""
        from rankers.model.tokenizer import Vocabulary

        st = dict(st)
        st["history"] = Ragged(st.pop("history_offsets"), st.pop("history_values"))
        for key in ("item_ids", "user_ids"):
            st[key] = st[key].tolist() if isinstance(st[key], np.ndarray) else list(st[key])
        st["user_vocab"] = Vocabulary.from_state(_unpacked(st["user_vocab"]))
        st["item_vocab"] = Vocabulary.from_state(_unpacked(st["item_vocab"]))
        return cls(**st)


def _id_array(ids) -> np.ndarray:
    """Ids as one fixed-width unicode array (an empty list too)."""
    return np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=str)


def _packed(vocab_state: dict) -> dict:
    """A Vocabulary's state with each field's value -> token dict as two arrays."""
    st = dict(vocab_state)
    st["vocab"] = {f: {"values": _id_array(list(d.keys())), "tokens": np.fromiter(d.values(), np.int64, len(d))}
                   for f, d in vocab_state["vocab"].items()}
    return st


def _unpacked(vocab_state: dict) -> dict:
    st = dict(vocab_state)
    st["vocab"] = {f: dict(zip(d["values"].tolist(), d["tokens"].tolist())) if "tokens" in d and
                   isinstance(d.get("tokens"), np.ndarray) else d for f, d in vocab_state["vocab"].items()}
    return st
