"""THE tokenizer: raw feature values -> token bags. Training, model.ts and the model.pt2
reference client all call this module, so an entity is tokenised the same way everywhere.

An entity (a user or an item) is a bag of tokens from one vocabulary, in a fixed order:
its id token (weight 1), then each feature field in spec order:
- ``categorical``: the value itself; ``multi``: the value split on ``sep``; ``numeric``:
  the bucket ``b<j>``, j = the number of bucket boundaries <= x;
- an empty value gives no token (a missing value); an unknown value gives the field's
  out-of-vocabulary token (``<oov>``), so a new user or item is scored from what is known;
- each of a field's n tokens weighs 1/n: the entity embedding is the sum over fields of
  the mean within a field.
Token 0 is padding.

``Vocabulary`` is what fitting on the training entities learns (plain data: checkpoints,
``lookups.json``); ``Tokenizer`` applies it. The Tokenizer is a scriptable ``nn.Module``:
model.ts holds it, the data pipeline calls it once per distinct value of a column (so
encoding a table is vectorised over its rows), the pt2 client runs it in Python.
"""

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

PAD = 0
OOV = "<oov>"
KINDS = ("categorical", "multi", "numeric")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: ``kind`` in {categorical, multi, numeric}; ``buckets`` (quantile
    buckets) for numeric, ``sep`` for multi-valued columns."""

    name: str
    kind: str = "categorical"
    buckets: int = 8
    sep: str = "|"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "numeric" and self.buckets < 1:
            raise ValueError(f"feature {self.name!r}: buckets must be >= 1")
        if self.kind == "multi" and not self.sep:
            raise ValueError(f"feature {self.name!r}: a multi-valued feature needs a separator")


def split_values(kind: str, sep: str, raw: str) -> List[str]:
    """The values in one raw cell of a categorical or multi field: empty strings are no value."""
    out: List[str] = []
    if kind == "multi":
        for v in raw.split(sep):
            if v != "":
                out.append(v)
    elif raw != "":
        out.append(raw)
    return out


def _number_problem(s: str) -> str:
    """Why ``s`` is not a plain decimal number in +-1e300 ("" when it is one).

    Accepted: [+-]digits[.digits][(e|E)[+-]digits], at least one mantissa digit. Stricter than
    ``float()`` (no 'nan', 'inf', '1_000' or blanks), and the same in Python and TorchScript,
    whose float() fails where the value under- or overflows (so magnitudes beyond 1e+-300 are
    refused here first)."""
    n = len(s)
    i = 0
    if i < n and (s[i] == "+" or s[i] == "-"):
        i += 1
    digits = 0
    int_digits = 0
    lead = -1  # index of the first non-zero integer digit
    while i < n and "0" <= s[i] <= "9":
        if s[i] != "0" and lead == -1:
            lead = int_digits
        i += 1
        digits += 1
        int_digits += 1
    frac = 0
    first_frac = -1  # 1-based position of the first non-zero fraction digit
    if i < n and s[i] == ".":
        i += 1
        while i < n and "0" <= s[i] <= "9":
            frac += 1
            if s[i] != "0" and first_frac == -1:
                first_frac = frac
            i += 1
            digits += 1
    if digits == 0:
        return "which is not a number"
    exp = 0
    if i < n and (s[i] == "e" or s[i] == "E"):
        i += 1
        sign = 1
        if i < n and (s[i] == "+" or s[i] == "-"):
            if s[i] == "-":
                sign = -1
            i += 1
        e_digits = 0
        while i < n and "0" <= s[i] <= "9":
            exp = min(exp * 10 + (ord(s[i]) - ord("0")), 100000)
            i += 1
            e_digits += 1
        if e_digits == 0:
            return "which is not a number"
        exp = sign * exp
    if i != n:
        return "which is not a number"
    if lead >= 0:
        magnitude = int_digits - 1 - lead + exp
    elif first_frac >= 0:
        magnitude = -first_frac + exp
    else:
        return ""  # zero
    if magnitude > 300 or magnitude < -300:
        return "which is out of range (magnitude beyond 1e+-300)"
    return ""


@dataclass
class Vocabulary:
    """Fitted vocabulary of one entity type (users or items), as plain data.

    Attributes:
        id_field: "user_id" / "item_id". specs: the feature fields, in bag order.
        vocab: field -> value -> token (>= 1); every field holds ``OOV``.
        boundaries: numeric field -> sorted bucket boundaries (buckets - 1 at most).
        ranges: numeric field -> [min, max] of the training values.
        n_tokens: tokens in all (padding included).
    """

    id_field: str
    specs: List[FeatureSpec]
    vocab: Dict[str, Dict[str, int]]
    boundaries: Dict[str, List[float]] = field(default_factory=dict)
    ranges: Dict[str, List[float]] = field(default_factory=dict)
    n_tokens: int = 1

    @property
    def fields(self) -> List[str]:
        return [self.id_field] + [s.name for s in self.specs]

    def describe(self) -> Dict[str, dict]:
        """Feature name -> what a caller may send: categorical/multi fields their known values,
        numeric fields their training range and bucket boundaries (any finite number is accepted)."""
        out: Dict[str, dict] = {}
        for s in self.specs:
            if s.kind == "numeric":
                out[s.name] = {"kind": "numeric", "range": list(self.ranges.get(s.name, [])),
                               "boundaries": list(self.boundaries[s.name])}
            else:
                d = {"kind": s.kind, "values": [v for v in self.vocab[s.name] if v != OOV]}
                if s.kind == "multi":
                    d["sep"] = s.sep
                out[s.name] = d
        return out

    def state(self) -> dict:
        """Plain-Python state (checkpoints, lookups.json)."""
        return {"id_field": self.id_field, "specs": [asdict(s) for s in self.specs], "vocab": self.vocab,
                "boundaries": self.boundaries, "ranges": self.ranges, "n_tokens": self.n_tokens, "oov": OOV}

    @classmethod
    def from_state(cls, st: dict) -> "Vocabulary":
        return cls(st["id_field"], [FeatureSpec(**s) for s in st["specs"]], st["vocab"], st["boundaries"],
                   st.get("ranges", {}), st["n_tokens"])


class Tokenizer(nn.Module):
    """Applies a ``Vocabulary``. Every method is TorchScript, so model.ts runs this code.

    Bad values raise ``ValueError`` naming the feature and the value (the only errors this
    module raises: the serving layer maps them to a client error).
    """

    # Class-level annotations: TorchScript needs them for containers that may be empty.
    id_field: str
    fields: List[str]
    kinds: Dict[str, str]
    seps: Dict[str, str]
    vocab: Dict[str, Dict[str, int]]
    boundaries: Dict[str, List[float]]
    oov: str

    def __init__(self, vocabulary: Vocabulary):
        super().__init__()
        self.vocabulary = vocabulary  # plain data, for Python callers; TorchScript drops it
        self.id_field = vocabulary.id_field
        self.fields = [s.name for s in vocabulary.specs]
        self.kinds = {s.name: s.kind for s in vocabulary.specs}
        self.seps = {s.name: s.sep for s in vocabulary.specs}
        self.vocab = {f: dict(v) for f, v in vocabulary.vocab.items()}
        self.boundaries = {f: [float(b) for b in v] for f, v in vocabulary.boundaries.items()}
        self.oov = OOV
        self.n_tokens = int(vocabulary.n_tokens)
        # token -> its field's position in the bag (0: the id field; -1: padding)
        field_of = torch.full((self.n_tokens,), -1, dtype=torch.int64)
        for pos, name in enumerate(vocabulary.fields):
            for tok in vocabulary.vocab[name].values():
                field_of[tok] = pos
        self.register_buffer("token_field", field_of)

    @torch.jit.export
    def lookup(self, field: str, value: str) -> int:
        """The token of one value of a field (``OOV`` for unseen values)."""
        d = self.vocab[field]
        return d.get(value, d[self.oov])

    def lookup_many(self, field: str, values) -> "np.ndarray":
        """``lookup`` over an array of values at once (the data pipeline's form, for columns
        as long as the entities): str [E] -> int64 [E]. Python only; TorchScript never sees it."""
        d = self.vocab[field]
        keys = np.array(list(d.keys()), dtype=str)  # fixed-width unicode: C comparisons, no Python ones
        order = np.argsort(keys)
        keys, tokens = keys[order], np.array(list(d.values()), dtype=np.int64)[order]
        values = np.asarray(values, dtype=str)
        pos = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
        return np.where(keys[pos] == values, tokens[pos], d[self.oov])

    @torch.jit.export
    def number(self, field: str, raw: str) -> float:
        """A numeric feature's value parsed strictly; ValueError names the feature and the value."""
        problem = _number_problem(raw)
        if problem != "":
            raise ValueError("numeric feature '" + field + "' got '" + raw + "', " + problem)
        return float(raw)

    @torch.jit.export
    def bucket_tokens(self, field: str, x: torch.Tensor) -> torch.Tensor:
        """Tokens of numeric values x [n] (float64, finite): bucket j = boundaries <= x -> [n] int64."""
        edges = torch.tensor(self.boundaries[field], dtype=torch.float64)
        j = torch.bucketize(x.to(torch.float64), edges, right=True)
        d = self.vocab[field]
        table: List[int] = []
        for b in range(len(self.boundaries[field]) + 1):
            table.append(d["b" + str(b)])
        return torch.tensor(table, dtype=torch.int64)[j]

    @torch.jit.export
    def field_tokens(self, field: str, raws: List[str]) -> List[int]:
        """The tokens of a field's raw values, in order."""
        if field not in self.kinds:
            raise ValueError("unknown feature '" + field + "'; known: " + ", ".join(self.fields))
        kind = self.kinds[field]
        if kind == "numeric":
            xs: List[float] = []
            for raw in raws:
                xs.append(self.number(field, raw))
            out: List[int] = self.bucket_tokens(field, torch.tensor(xs, dtype=torch.float64)).tolist()
            return out
        toks: List[int] = []
        for raw in raws:
            for v in split_values(kind, self.seps[field], raw):
                toks.append(self.lookup(field, v))
        return toks

    @torch.jit.export
    def field_bag(self, field: str, raws: List[str]) -> Tuple[List[int], List[float]]:
        """A field's tokens and their weights (1/n each for n tokens)."""
        toks = self.field_tokens(field, raws)
        w: List[float] = []
        for _ in toks:
            w.append(1.0 / len(toks))
        return toks, w
