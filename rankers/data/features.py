"""Feature tables and vocabularies: validating a table, fitting a vocabulary on the
training entities, and encoding a whole table into token bags.

The rule that turns values into tokens is ``rankers.model.tokenizer`` (the same code runs in
model.ts and the model.pt2 client); this module applies it to tables: once per distinct
value of a column (a categorical column has as many as its vocabulary), never per row.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from rankers.data.errors import DataError
from rankers.data.ids import normalise_ids
from rankers.data.log import numeric_column
from rankers.model.tokenizer import OOV, FeatureSpec, Tokenizer, Vocabulary, split_values

__all__ = ["FeatureSpec", "validate_table", "fit_vocabulary", "encode_entities"]


def validate_table(df: pd.DataFrame, key: str, specs: Sequence[FeatureSpec], source: str) -> pd.DataFrame:
    """Check a feature table keyed by ``key``; numeric columns must be finite numbers.

    Returns the table indexed by the key (as str), columns limited to the specs': numeric
    columns float64, the others str (missing values become "", which is no value).
    """
    missing = [c for c in [key] + [s.name for s in specs] if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {list(df.columns)}", source=source)
    keys = pd.Series(normalise_ids(df[key], source, key))
    dup = keys.duplicated().to_numpy()
    if dup.any():
        r = int(np.flatnonzero(dup)[0])
        raise DataError(f"duplicate {key} {keys.iloc[r]!r}", source=source, column=key, row=r)
    out = pd.DataFrame(index=pd.Index(keys.to_numpy(), name=key))
    for s in specs:
        col = df[s.name]
        if s.kind == "numeric":
            out[s.name] = numeric_column(col, source, s.name, "a numeric feature")
        else:
            out[s.name] = text_cells(col, s, source)
    return out


def is_list_column(col: pd.Series) -> bool:
    """A column of lists (a Parquet list column: every cell is one), told by its first value."""
    first = col.dropna().head(1)
    return col.dtype == object and len(first) > 0 and isinstance(first.iloc[0], (list, tuple, np.ndarray))


def text_cells(col: pd.Series, spec: FeatureSpec, source: str) -> np.ndarray:
    """A categorical or multi column as raw cells (str [n]; missing -> "", no value). A list
    column (Parquet) holds a multi field's values, joined here by its separator; as a
    categorical field, or with a value holding the separator, it is a DataError."""
    if not is_list_column(col):
        return col.fillna("").astype(str).to_numpy()
    if spec.kind != "multi":
        r = int(np.flatnonzero(col.notna().to_numpy())[0])
        raise DataError(f"holds lists ({list(col.iloc[r])!r}): declare the feature with kind: multi",
                        source=source, column=spec.name, row=r)
    values = col.reset_index(drop=True).explode().dropna().astype(str)  # one row per value, vectorised
    has_sep = values.str.contains(spec.sep, regex=False).to_numpy()
    if has_sep.any():
        k = int(np.flatnonzero(has_sep)[0])
        raise DataError(f"value {values.iloc[k]!r} holds the multi field's separator {spec.sep!r}", source=source,
                        column=spec.name, row=int(values.index[k]))
    joined = values.groupby(level=0).agg(spec.sep.join)
    return joined.reindex(pd.RangeIndex(len(col)), fill_value="").to_numpy(dtype=object).astype(str)


def fit_vocabulary(id_field: str, ids: Sequence[str], table: pd.DataFrame | None,
                   specs: Sequence[FeatureSpec], base: Vocabulary | None = None) -> Vocabulary:
    """The vocabulary of the training entities ``ids`` and their rows of ``table`` (indexed by
    id): per field the OOV token, then the values in sorted order; numeric fields get
    quantile bucket boundaries and their range.

    ``base`` (a warm start: the previous model's vocabulary) grows instead: every token of
    ``base`` keeps its number, values it lacks get new tokens after its last one (field by
    field, sorted), and numeric fields keep its bucket boundaries (a bucket token keeps its
    meaning). The fields must be ``base``'s (names, kinds, order), else a ValueError."""
    if base is not None:
        _check_same_fields(id_field, specs, base)
        return _grow(fit_vocabulary(id_field, ids, table, specs), base)
    vocab: Dict[str, Dict[str, int]] = {}
    boundaries: Dict[str, List[float]] = {}
    ranges: Dict[str, List[float]] = {}
    nxt = 1

    def add_field(name: str, values) -> None:
        nonlocal nxt
        d = {OOV: nxt}
        for v in values:
            d[v] = nxt + len(d)
        vocab[name] = d
        nxt += len(d)

    ids = pd.unique(np.asarray(ids, dtype=object).astype(str))
    add_field(id_field, sorted(ids))
    rows = table.reindex(table.index.intersection(pd.Index(ids, dtype=object))) if table is not None else None
    for s in specs:
        if s.kind == "numeric":
            vals = rows[s.name].to_numpy(np.float64) if rows is not None and len(rows) else np.zeros(0)
            qs = np.quantile(vals, np.linspace(0, 1, s.buckets + 1)[1:-1]) if len(vals) else []
            boundaries[s.name] = sorted(set(float(q) for q in qs))
            ranges[s.name] = [float(vals.min()), float(vals.max())] if len(vals) else []
            add_field(s.name, [f"b{j}" for j in range(len(boundaries[s.name]) + 1)])
        else:
            seen = set()
            if rows is not None:
                for raw in pd.unique(rows[s.name]):  # distinct cells, not rows
                    seen.update(split_values(s.kind, s.sep, raw))
            add_field(s.name, sorted(seen))
    return Vocabulary(id_field, list(specs), vocab, boundaries, ranges, nxt)


def _check_same_fields(id_field: str, specs: Sequence[FeatureSpec], base: Vocabulary) -> None:
    now = [(id_field, "id")] + [(s.name, s.kind) for s in specs]
    was = [(base.id_field, "id")] + [(s.name, s.kind) for s in base.specs]
    if now != was:
        raise ValueError(f"the previous model's {base.id_field} features were {was[1:]}, this data's are {now[1:]}: "
                         "a warm start keeps the feature fields (train from scratch to change them)")


def _grow(fresh: Vocabulary, base: Vocabulary) -> Vocabulary:
    """``base`` plus the values of ``fresh`` it lacks (categorical, multi and id fields), as new
    tokens numbered from ``base.n_tokens`` on."""
    vocab = {f: dict(d) for f, d in base.vocab.items()}
    nxt = base.n_tokens
    kinds = {s.name: s.kind for s in base.specs}
    for name in base.fields:
        if kinds.get(name) == "numeric":
            continue  # the buckets stay base's
        d = vocab[name]
        for v in sorted(set(fresh.vocab[name]) - set(d)):
            d[v] = nxt
            nxt += 1
    return Vocabulary(base.id_field, list(base.specs), vocab, {f: list(b) for f, b in base.boundaries.items()},
                      {f: list(r) for f, r in base.ranges.items()}, nxt)


def _column_bags(tok: Tokenizer, field: str, column: pd.Series) -> Tuple[np.ndarray, np.ndarray]:
    """Tokens of one categorical or multi column: padded [E, m] int64 and counts [E], from one
    tokenizer call per distinct cell."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    per_unique = [tok.field_tokens(field, [str(u)]) for u in uniques]
    lens = np.fromiter((len(t) for t in per_unique), dtype=np.int64, count=len(per_unique))
    width = int(lens.max()) if len(lens) else 0
    table = np.zeros((len(per_unique), max(width, 1)), np.int64)
    for r, t in enumerate(per_unique):
        table[r, :len(t)] = t
    return table[codes], lens[codes]


def encode_entities(tok: Tokenizer, ids: Sequence[str], table: pd.DataFrame | None) -> Tuple[np.ndarray, np.ndarray]:
    """Token bags of entities, in the tokenizer's order (id, then each field's tokens).

    Args:
        tok: the fitted tokenizer. ids: entity ids [E]; unknown ids get the OOV id token.
        table: feature table indexed by id (as ``validate_table`` returns); an entity without
            a row gets no feature tokens.

    Returns:
        tokens int64 [E, T] (0 = padding, at the end of each row) and weights float32 [E, T].
    """
    ids = np.asarray(ids, dtype=object).astype(str)
    E = len(ids)
    parts_t: List[np.ndarray] = [tok.lookup_many(tok.id_field, ids)[:, None]]
    parts_w: List[np.ndarray] = [np.ones((E, 1), np.float32)]
    if table is not None and tok.fields:
        pos = table.index.get_indexer(pd.Index(ids, dtype=object))
        has = pos >= 0
        rows = table.iloc[np.where(has, pos, 0)] if len(table) else None
        for spec in tok.vocabulary.specs:
            if rows is None:
                break
            if spec.kind == "numeric":
                t = tok.bucket_tokens(spec.name, torch.tensor(rows[spec.name].to_numpy(np.float64))).numpy()
                t, n = t[:, None], np.ones(E, np.int64)
            else:
                t, n = _column_bags(tok, spec.name, rows[spec.name].reset_index(drop=True))
            t = np.where(has[:, None], t, 0)
            n = np.where(has, n, 0)
            parts_t.append(t)
            parts_w.append(np.where(t > 0, 1.0 / np.maximum(n, 1)[:, None], 0.0).astype(np.float32))
    tokens = np.concatenate(parts_t, axis=1)
    weights = np.concatenate(parts_w, axis=1)
    # Padding holes between fields move to the end, the tokens keep their order.
    order = np.argsort(tokens == 0, axis=1, kind="stable")
    tokens = np.take_along_axis(tokens, order, 1)
    weights = np.take_along_axis(weights, order, 1)
    width = max(1, int((tokens > 0).sum(1).max())) if E else 1
    return np.ascontiguousarray(tokens[:, :width]), np.ascontiguousarray(weights[:, :width])
