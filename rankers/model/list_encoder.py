"""THE encoding of impression-list columns into the sparse linear model's features, and THE
within-list scaling. Training (``rankers.data.lists.read_list_table``, the synthetic impression
log) and model.ts's ``rerank`` call this module, so a (context, candidate) row becomes the same
features everywhere.

A row is a set of named columns (strings at serving time; numbers or strings in a table):
- each ``numeric`` column is one feature, its value the number (an empty cell: no feature);
- each categorical feature reads one column, or several joined (a *cross*, e.g. user segment x
  price decile), and sets one dimension to 1: its value's, one-hot over the values seen in
  training (an unseen value sets none) or hashed into ``buckets`` dimensions (FNV-1a over the
  value's characters, unseen values included); a ``sep`` splits a cell into several values
  (a multi-valued column); an empty cell (any column of a cross empty) sets none.
Then every feature is min-max scaled within its list (``scale_within_lists``: the paper's rule;
a row without the feature holds 0, which counts).

``ListEncoding`` is the fitted state (plain data: the run directory and the export carry it);
``ListEncoder`` applies it and is a scriptable ``nn.Module``. The table path calls its
``index_of`` once per distinct value of a column (so encoding a table is vectorised over rows),
model.ts calls ``encode`` on one list.
"""

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import nn

from rankers.model.tokenizer import _number_problem, split_values

CROSS = "\x1f"  # joins a cross's column values into one value (a character no cell holds)


@dataclass
class CategoricalFeature:
    """A one-hot (``buckets`` 0: ``vocab`` value -> dimension within the block) or hashed
    (``buckets`` > 0) feature over one column or a cross of ``columns``; ``sep``: a multi-valued
    column's separator ("" for none; single columns only)."""

    columns: List[str]
    buckets: int = 0
    sep: str = ""
    vocab: Dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return " x ".join(self.columns)

    @property
    def size(self) -> int:
        return self.buckets if self.buckets else len(self.vocab)


@dataclass
class ListEncoding:
    """numeric: column names, a dimension each (first); categorical: the one-hot and hashed
    features, a block each, in order."""

    numeric: List[str]
    categorical: List[CategoricalFeature]

    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(c.size for c in self.categorical)

    @property
    def columns(self) -> List[str]:
        """Every column the encoding reads."""
        out = list(self.numeric)
        for c in self.categorical:
            out += [x for x in c.columns if x not in out]
        return out

    def names(self) -> List[str]:
        """The name of each feature dimension."""
        out = list(self.numeric)
        for c in self.categorical:
            if c.buckets:
                out += [f"{c.name}#{b}" for b in range(c.buckets)]
            else:
                inv = sorted(c.vocab, key=c.vocab.get)
                out += [f"{c.name}={v.replace(CROSS, ' x ')}" for v in inv]
        return out

    def state(self) -> dict:
        return {"numeric": list(self.numeric), "categorical": [asdict(c) for c in self.categorical]}

    @classmethod
    def from_state(cls, st: dict) -> "ListEncoding":
        return cls(list(st["numeric"]), [CategoricalFeature(**c) for c in st["categorical"]])


def fnv1a(value: str) -> int:
    """32-bit FNV-1a over the value's code points (the same in Python and TorchScript)."""
    h = 2166136261
    for ch in value:
        h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
    return h


class ListEncoder(nn.Module):
    """Applies a ``ListEncoding``; every exported method is TorchScript (model.ts runs it).

    Bad values raise ``ValueError`` naming the column, the row and the value."""

    numeric: List[str]
    cat_columns: List[List[str]]
    cat_names: List[str]
    seps: List[str]
    buckets: List[int]
    offsets: List[int]
    vocab: List[Dict[str, int]]
    columns: List[str]
    cross: str

    def __init__(self, encoding: ListEncoding):
        super().__init__()
        self.encoding = encoding  # plain data, for Python callers; TorchScript drops it
        self.numeric = list(encoding.numeric)
        self.cat_columns = [list(c.columns) for c in encoding.categorical]
        self.cat_names = [c.name for c in encoding.categorical]
        self.seps = [c.sep for c in encoding.categorical]
        self.buckets = [int(c.buckets) for c in encoding.categorical]
        self.vocab = [dict(c.vocab) for c in encoding.categorical]
        at = len(self.numeric)
        self.offsets = []
        for c in encoding.categorical:
            self.offsets.append(at)
            at += c.size
        self.n_features = at
        self.columns = encoding.columns
        self.cross = CROSS  # an attribute: TorchScript reads no module globals

    @torch.jit.export
    def index_of(self, j: int, value: str) -> int:
        """The dimension categorical feature ``j`` sets for one (non-empty) value; -1 for a
        one-hot value not seen in training."""
        if self.buckets[j] > 0:
            return self.offsets[j] + fnv1a(value) % self.buckets[j]
        d = self.vocab[j].get(value, -1)
        return -1 if d < 0 else self.offsets[j] + d

    @torch.jit.export
    def encode(self, columns: Dict[str, List[str]], numbers: Dict[str, torch.Tensor],
               n: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One list of ``n`` rows, each column a list of n cells (a column absent: every cell
        empty), numeric columns also as numbers (float64 [n], e.g. a score computed in the
        model) -> COO features (index int64 [nnz], value float32 [nnz], row int64 [nnz])."""
        none: List[int] = []
        return self.encode_except(columns, numbers, n, none)

    @torch.jit.export
    def encode_except(self, columns: Dict[str, List[str]], numbers: Dict[str, torch.Tensor], n: int,
                      skip: List[int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``encode`` without the features in ``skip`` (feature ids: numeric column j is j,
        categorical feature j is len(numeric) + j), e.g. ones already encoded per item."""
        skipped: Dict[int, bool] = {}
        for f in skip:
            skipped[f] = True
        for name, cells in columns.items():
            if len(cells) != n:
                raise ValueError("column '" + name + "' has " + str(len(cells)) + " values for " + str(n)
                                 + " candidates")
        idx: List[int] = []
        val: List[float] = []
        rows: List[int] = []
        for j in range(len(self.numeric)):
            name = self.numeric[j]
            if j in skipped:
                continue
            if name in numbers:
                x = numbers[name]
                if x.shape[0] != n or not bool(torch.isfinite(x).all()):
                    raise ValueError("numeric column '" + name + "' needs " + str(n) + " finite numbers")
                xs: List[float] = x.to(torch.float32).tolist()
                for r in range(n):
                    idx.append(j)
                    val.append(xs[r])
                    rows.append(r)
            elif name in columns:
                cells = columns[name]
                for r in range(n):
                    raw = cells[r]
                    if raw != "":
                        problem = _number_problem(raw)
                        if problem != "":
                            raise ValueError("numeric column '" + name + "' row " + str(r) + " got '" + raw
                                             + "', " + problem)
                        idx.append(j)
                        val.append(float(raw))
                        rows.append(r)
        for j in range(len(self.cat_columns)):
            cols = self.cat_columns[j]
            present = len(self.numeric) + j not in skipped
            for c in cols:
                if c not in columns:
                    present = False
            if present:
                for r in range(n):
                    parts: List[str] = []
                    for c in cols:
                        parts.append(columns[c][r])
                    value = self.cross.join(parts)
                    if "" not in parts:
                        for v in split_values("multi" if self.seps[j] != "" else "categorical", self.seps[j], value):
                            d = self.index_of(j, v)
                            if d >= 0:
                                idx.append(d)
                                val.append(1.0)
                                rows.append(r)
        return (torch.tensor(idx, dtype=torch.int64), torch.tensor(val, dtype=torch.float32),
                torch.tensor(rows, dtype=torch.int64))


def scale_within_lists(nnz_list: torch.Tensor, index: torch.Tensor, value: torch.Tensor, list_sizes: torch.Tensor,
                       n_features: int) -> torch.Tensor:
    """Each feature min-max scaled to [0, 1] within each list (a feature constant in a list
    becomes 0 there); a row of the list without the feature holds 0, which counts.

    nnz_list int64 [nnz] (the list of each stored feature), index int64 [nnz], value [nnz],
    list_sizes int64 [L] (rows per list) -> float32 [nnz]. Computed in float64."""
    if value.numel() == 0:
        return value.to(torch.float32)
    key = nnz_list * n_features + index
    groups, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    v = value.to(torch.float64)
    g = groups.shape[0]
    lo = torch.full((g,), float("inf"), dtype=torch.float64).scatter_reduce(0, inverse, v, "amin")
    hi = torch.full((g,), float("-inf"), dtype=torch.float64).scatter_reduce(0, inverse, v, "amax")
    implicit_zero = counts < list_sizes[torch.div(groups, n_features, rounding_mode="floor")]
    lo = torch.where(implicit_zero, lo.clamp(max=0.0), lo)
    hi = torch.where(implicit_zero, hi.clamp(min=0.0), hi)
    span = (hi - lo)[inverse]
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (v - lo[inverse]) / safe, torch.zeros_like(v)).to(torch.float32)
