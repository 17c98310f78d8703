"""From a request's user (id, features) to the model's user inputs, as training encodes a user.

Shared by model.ts (scripted inside the Recommender) and the model.pt2 reference client
(run in Python), so both resolve a user the same way.
"""
from typing import Dict, List, Tuple

import torch
from torch import nn

from rankers.artifact.schema import HISTORY_FIELD
from rankers.model.tokenizer import Tokenizer


class UserResolver(nn.Module):
    """(user id, features) -> the user's token bag and history bag.

    A known id starts from its stored bag and history; each field given in ``features``
    replaces that field's stored tokens (tokenised by the Tokenizer); an unknown id gets the
    id field's OOV token plus the given fields. The reserved feature ``history`` (item ids,
    unknown ones ignored, repeats counted once) replaces the stored history. The bag comes
    out in the tokenizer's field order, so it equals what the training encoder builds from
    the same values.

    Args:
        tokenizer: the users' Tokenizer. user_ids: the known users [U].
        tokens int64 / weights float32 [U, Tu]: their stored bags; history int64 [U, H]: their
        history bags (item index + 1, 0 = padding). item_ids: the catalogue [N].
    """

    user_index: Dict[str, int]
    item_index: Dict[str, int]
    history_field: str

    def __init__(self, tokenizer: Tokenizer, user_ids: List[str], tokens: torch.Tensor, weights: torch.Tensor,
                 history: torch.Tensor, item_ids: List[str]):
        super().__init__()
        self.tokenizer = tokenizer
        self.register_buffer("tokens", torch.as_tensor(tokens, dtype=torch.int64))
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))
        self.register_buffer("history", torch.as_tensor(history, dtype=torch.int64))
        self.user_index = {s: i for i, s in enumerate(user_ids)}
        self.item_index = {s: i for i, s in enumerate(item_ids)}
        self.history_field = HISTORY_FIELD  # an attribute: TorchScript reads no module globals

    @torch.jit.export
    def check(self, features: Dict[str, List[str]]) -> None:
        """ValueError naming the first unknown feature."""
        for name in features.keys():
            if name not in self.tokenizer.kinds and name != self.history_field:
                raise ValueError("unknown user feature '" + name + "'; known: "
                                 + ", ".join(self.tokenizer.fields + [self.history_field]))

    @torch.jit.export
    def history_of(self, items: List[str]) -> torch.Tensor:
        """A history bag from item ids: [H] item index + 1 (unknown ids left out, repeats once; [0] if none)."""
        seen: Dict[int, bool] = {}
        out: List[int] = []
        for item in items:
            ix = self.item_index.get(item, -1)
            if ix >= 0 and ix not in seen:
                seen[ix] = True
                out.append(ix + 1)
        if len(out) == 0:
            out.append(0)
        return torch.tensor(out, dtype=torch.int64)

    @torch.jit.export
    def resolve(self, user_id: str, features: Dict[str, List[str]]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> tokens int64 [T], weights float32 [T] (the bag; [0], [0.] if empty) and history
        int64 [H] (item index + 1, 0 = padding)."""
        self.check(features)
        row = self.user_index.get(user_id, -1)
        tok = self.tokenizer
        parts_t: List[torch.Tensor] = []
        parts_w: List[torch.Tensor] = []
        stored = torch.zeros(0, dtype=torch.int64)
        stored_w = torch.zeros(0, dtype=torch.float32)
        if row >= 0:
            stored = self.tokens[row]
            stored_w = self.weights[row]
        field = tok.token_field[stored]  # the field position of each stored token (-1: padding)
        if row >= 0:
            parts_t.append(stored[field == 0])
            parts_w.append(stored_w[field == 0])
        else:
            parts_t.append(torch.tensor([tok.lookup(tok.id_field, tok.oov)], dtype=torch.int64))
            parts_w.append(torch.ones(1, dtype=torch.float32))
        for p in range(len(tok.fields)):
            name = tok.fields[p]
            if name in features:
                t, w = tok.field_bag(name, features[name])
                parts_t.append(torch.tensor(t, dtype=torch.int64))
                parts_w.append(torch.tensor(w, dtype=torch.float32))
            else:
                keep = field == p + 1
                parts_t.append(stored[keep])
                parts_w.append(stored_w[keep])
        tokens = torch.cat(parts_t)
        weights = torch.cat(parts_w)
        if tokens.numel() == 0:
            tokens = torch.zeros(1, dtype=torch.int64)
            weights = torch.zeros(1, dtype=torch.float32)
        if self.history_field in features:
            history = self.history_of(features[self.history_field])
        elif row >= 0:
            history = self.history[row]
        else:
            history = torch.zeros(1, dtype=torch.int64)
        return tokens, weights, history
