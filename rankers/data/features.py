"""Feature tables and vocabularies: entities (users or items) become bags of tokens.

Every entity is encoded as a bag of tokens from one vocabulary: its id token plus one
token per feature value (``field=value``). Categorical columns give one value, multi-valued
columns (``a|b|c``) several, numeric columns are bucketized with quantile boundaries
fitted on training entities. Each field's tokens share weight 1 (a multi-valued field's
values get 1/n each), so an entity embedding is the sum over fields of the mean within
a field. Token 0 is padding. Every field has an out-of-vocabulary token for values (and
ids) not seen in training, which is how a new user or item with known feature values is
scored (cold start).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

from rankers.data.errors import DataError

PAD = 0
OOV = "<oov>"
KINDS = ("categorical", "multi", "numeric")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: ``kind`` in {categorical, multi, numeric}; ``buckets`` for numeric."""

    name: str
    kind: str = "categorical"
    buckets: int = 8
    sep: str = "|"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "numeric" and self.buckets < 1:
            raise ValueError(f"feature {self.name!r}: buckets must be >= 1")


def validate_table(df: pd.DataFrame, key: str, specs: Sequence[FeatureSpec], source: str) -> pd.DataFrame:
    """Check a feature table keyed by ``key``; numeric columns must be finite numbers.

    Returns the table indexed by the key (as str), columns limited to the specs'.
    """
    missing = [c for c in [key] + [s.name for s in specs] if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {list(df.columns)}", source=source)
    keys = df[key].astype(str)
    dup = keys.duplicated().to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        raise DataError(f"duplicate {key} {keys.iloc[r]!r}", source=source, column=key, row=r)
    out = pd.DataFrame(index=pd.Index(keys.to_numpy(), name=key))
    for s in specs:
        col = df[s.name]
        if s.kind == "numeric":
            v = pd.to_numeric(col, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            bad = ~np.isfinite(v)
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise DataError(f"numeric feature is not a finite number: {col.iloc[r]!r}",
                                source=source, column=s.name, row=r)
            out[s.name] = v
        else:
            out[s.name] = col.fillna("").astype(str).to_numpy()
    return out


def _values(spec: FeatureSpec, raw) -> List[str]:
    if spec.kind == "multi":
        return [v for v in str(raw).split(spec.sep) if v != ""]
    s = str(raw)
    return [s] if s != "" else []


@dataclass
class EntityEncoder:
    """Vocabulary for one entity type (users or items) and its feature fields.

    Attributes:
        id_field: name of the id field ("user_id" / "item_id").
        specs: feature fields.
        vocab: field -> value -> token index (>= 1). Each field holds OOV.
        boundaries: numeric field -> sorted bucket boundaries (len buckets-1).
    """

    id_field: str
    specs: List[FeatureSpec]
    vocab: Dict[str, Dict[str, int]] = field(default_factory=dict)
    boundaries: Dict[str, List[float]] = field(default_factory=dict)
    n_tokens: int = 1

    @classmethod
    def fit(cls, id_field: str, ids: Sequence[str], table: pd.DataFrame | None,
            specs: Sequence[FeatureSpec]) -> "EntityEncoder":
        """Build vocabularies from the training entities ``ids`` (and their table rows)."""
        enc = cls(id_field, list(specs))
        nxt = 1

        def add_field(name: str, values):
            nonlocal nxt
            d = {OOV: nxt}
            nxt += 1
            for v in values:
                if v not in d:
                    d[v] = nxt
                    nxt += 1
            enc.vocab[name] = d

        ids = [str(i) for i in ids]
        add_field(id_field, sorted(set(ids)))
        rows = table.reindex([i for i in ids if table is not None and i in table.index]) \
            if table is not None else None
        for s in enc.specs:
            if s.kind == "numeric":
                vals = rows[s.name].to_numpy(np.float64) if rows is not None and len(rows) else np.zeros(0)
                qs = np.quantile(vals, np.linspace(0, 1, s.buckets + 1)[1:-1]) if len(vals) else []
                enc.boundaries[s.name] = sorted(set(float(q) for q in qs))
                add_field(s.name, [f"b{j}" for j in range(len(enc.boundaries[s.name]) + 1)])
            else:
                vals = set()
                if rows is not None:
                    for raw in rows[s.name]:
                        vals.update(_values(s, raw))
                add_field(s.name, sorted(vals))
        enc.n_tokens = nxt
        return enc

    @property
    def fields(self) -> List[str]:
        return [self.id_field] + [s.name for s in self.specs]

    def known_values(self) -> Dict[str, List[str]]:
        """Feature name -> known values (numeric fields: bucket labels), without OOV."""
        return {s.name: [v for v in self.vocab[s.name] if v != OOV] for s in self.specs}

    def field_tokens(self, spec: FeatureSpec, raw) -> List[int]:
        """Token indices for one raw value of one field (OOV for unseen values)."""
        d = self.vocab[spec.name]
        if spec.kind == "numeric":
            try:
                x = float(raw)
            except (TypeError, ValueError):
                raise DataError(f"numeric feature {spec.name!r} got {raw!r}")
            if not np.isfinite(x):
                raise DataError(f"numeric feature {spec.name!r} got {raw!r}")
            return [d[f"b{int(np.searchsorted(self.boundaries[spec.name], x, side='right'))}"]]
        return [d.get(v, d[OOV]) for v in _values(spec, raw)]

    def encode(self, ids: Sequence[str], table: pd.DataFrame | None,
               id_known: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Encode entities as padded token bags.

        Args:
            ids: entity ids [E] (str); unknown ids get the id field's OOV token.
            table: feature table indexed by id (rows missing there get no feature tokens).
            id_known: False encodes without the id token (features alone).

        Returns:
            tokens int64 [E, T] (0 = padding) and weights float32 [E, T].
        """
        bags: List[List[tuple[int, float]]] = []
        idv = self.vocab[self.id_field]
        present = set(table.index) if table is not None else set()
        for e in ids:
            e = str(e)
            bag = [(idv.get(e, idv[OOV]), 1.0)] if id_known else []
            if e in present:
                row = table.loc[e]
                for s in self.specs:
                    toks = self.field_tokens(s, row[s.name])
                    bag.extend((t, 1.0 / len(toks)) for t in toks)
            bags.append(bag)
        width = max(1, max((len(b) for b in bags), default=1))
        tokens = np.zeros((len(bags), width), np.int64)
        weights = np.zeros((len(bags), width), np.float32)
        for r, bag in enumerate(bags):
            for c, (t, w) in enumerate(bag):
                tokens[r, c], weights[r, c] = t, w
        return tokens, weights

    def state(self) -> dict:
        """Plain-Python state (for checkpoints and export)."""
        return {"id_field": self.id_field, "specs": [s.__dict__ for s in self.specs],
                "vocab": self.vocab, "boundaries": self.boundaries, "n_tokens": self.n_tokens}

    @classmethod
    def from_state(cls, st: dict) -> "EntityEncoder":
        return cls(st["id_field"], [FeatureSpec(**s) for s in st["specs"]], st["vocab"],
                   st["boundaries"], st["n_tokens"])
