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
        tokens / weights [U, Tu]: their stored bags (kept as int32 / float32);
        history_offsets int64 [U + 1], history_items [S]: their history bags as CSR (item index + 1;
        kept as int32, so a million users with their histories fit in model.ts).
        item_ids: the catalogue [N].
    """

    user_index: Dict[str, int]
    item_index: Dict[str, int]
    history_field: str

    def __init__(self, tokenizer: Tokenizer, user_ids: List[str], tokens, weights, history_offsets, history_items,
                 item_ids: List[str]):
        super().__init__()
        self.tokenizer = tokenizer
        self.register_buffer("tokens", torch.as_tensor(tokens).to(torch.int32))
        self.register_buffer("weights", torch.as_tensor(weights).to(torch.float32))
        self.register_buffer("history_offsets", torch.as_tensor(history_offsets).to(torch.int64))
        self.register_buffer("history_items", torch.as_tensor(history_items).to(torch.int32))
        self.user_index = {s: i for i, s in enumerate(user_ids)}
        self.item_index = {s: i for i, s in enumerate(item_ids)}
        self.history_field = HISTORY_FIELD  # an attribute: TorchScript reads no module globals

    @torch.jit.export
    def stored_history(self, row: int) -> torch.Tensor:
        """Known user ``row``'s history bag [H] (item index + 1; [0] when empty)."""
        h = self.history_items[self.history_offsets[row]:self.history_offsets[row + 1]].to(torch.int64)
        return h if h.numel() > 0 else torch.zeros(1, dtype=torch.int64)

    def padded_histories(self, start: int, stop: int) -> torch.Tensor:
        """Known users start..stop-1's history bags, padded with 0: [B, H] int64 (Python only)."""
        off = self.history_offsets[start:stop + 1]
        lens = off[1:] - off[:-1]
        out = torch.zeros(stop - start, max(1, int(lens.max()) if len(lens) else 1), dtype=torch.int64)
        rows = torch.repeat_interleave(torch.arange(stop - start), lens)
        cols = torch.arange(int(lens.sum())) - torch.repeat_interleave(off[:-1] - off[0], lens)
        out[rows, cols] = self.history_items[off[0]:off[-1]].to(torch.int64)
        return out

    @torch.jit.export
    def check(self, features: Dict[str, List[str]]) -> None:
        """ValueError naming the first unknown feature, or a field given values it cannot
        take: a categorical or numeric field takes one value (a cell of the training data
        holds one); several single characters, none of them known, in a multi field are a
        string torch split into characters (model.ts takes lists: {"country": "DE"} arrives
        as ["D", "E"])."""
        for name, values in features.items():
            if name == self.history_field:
                continue
            if name not in self.tokenizer.kinds:
                raise ValueError("unknown user feature '" + name + "'; known: "
                                 + ", ".join(self.tokenizer.fields + [self.history_field]))
            kind = self.tokenizer.kinds[name]
            chars = len(values) > 1
            for v in values:
                if len(v) != 1:
                    chars = False
            hint = ""
            if chars:
                hint = (" (a string split into its characters? pass a list of values: ['"
                        + "".join(values) + "'])")
            if kind != "multi" and len(values) > 1:
                raise ValueError(kind + " feature '" + name + "' takes one value, got " + str(len(values)) + hint)
            if kind == "multi" and chars:
                known = False
                for v in values:
                    if v in self.tokenizer.vocab[name]:
                        known = True
                if not known:
                    raise ValueError("multi feature '" + name + "' got " + str(len(values))
                                     + " single characters, none of them a known value" + hint)

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
            stored = self.tokens[row].to(torch.int64)
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
            history = self.stored_history(row)
        else:
            history = torch.zeros(1, dtype=torch.int64)
        return tokens, weights, history
