"""Impression lists: the candidates a widget showed for one context, with graded labels and
sparse features per (context, candidate) row. What the paper's model (Freno et al., KDD 2015)
learns from, and the learning-to-rank benchmarks' format.

``read_list_table`` reads a CSV or Parquet table (a row per candidate: list id, label, numeric
and categorical columns; categoricals one-hot over the training values or hashed).
``read_letor`` reads the SVMlight/LETOR text format, ``label [qid:ID] idx:value ... [# comment]``,
with the lists given by ``qid`` or by a LightGBM-style query file (one list size per line). The
parse is vectorised over the file's tokens (no per-line Python loop): the lines are found by a
sentinel token, features split on ``:`` as arrays. Bad input is a DataError naming the file and
the line; a list with one candidate teaches no pair and is skipped and counted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from rankers.data.errors import DataError
from rankers.model.list_encoder import CROSS, CategoricalFeature, ListEncoder, ListEncoding, scale_within_lists
from rankers.model.tokenizer import split_values

log = logging.getLogger(__name__)
_END = "\x00"  # a token no LETOR line holds: the end of a line


@dataclass
class ListData:
    """Lists of candidates as CSR arrays (R rows in L lists, nnz stored features).

    list_offsets int64 [L + 1]: list l is rows list_offsets[l]:list_offsets[l + 1].
    labels float32 [R]: graded relevance (higher is better).
    feat_offsets int64 [R + 1], feat_index int64 [nnz] (0-based), feat_value float32 [nnz]:
        row r's features are feat_index/feat_value[feat_offsets[r]:feat_offsets[r + 1]].
    n_features: F (the largest index + 1, or more). list_ids: str [L].
    skipped: single-candidate lists left out.
    """

    list_offsets: np.ndarray
    labels: np.ndarray
    feat_offsets: np.ndarray
    feat_index: np.ndarray
    feat_value: np.ndarray
    n_features: int
    list_ids: np.ndarray
    skipped: int = 0

    @property
    def n_lists(self) -> int:
        return len(self.list_offsets) - 1

    @property
    def n_rows(self) -> int:
        return len(self.labels)

    def feature_rows(self) -> np.ndarray:
        """The row of each stored feature -> int64 [nnz] (COO rows of the CSR)."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.feat_offsets))

    def row_list(self) -> np.ndarray:
        """The list of each row -> int64 [R]."""
        return np.repeat(np.arange(self.n_lists), np.diff(self.list_offsets))

    def take_lists(self, lists: np.ndarray) -> "ListData":
        """The lists ``lists`` (indices), in that order."""
        lists = np.asarray(lists, np.int64)
        lo, hi = self.list_offsets[lists], self.list_offsets[lists + 1]
        rows = _ranges(lo, hi)
        flo, fhi = self.feat_offsets[rows], self.feat_offsets[rows + 1]
        nnz = _ranges(flo, fhi)
        return ListData(np.r_[0, np.cumsum(hi - lo)], self.labels[rows], np.r_[0, np.cumsum(fhi - flo)],
                        self.feat_index[nnz], self.feat_value[nnz], self.n_features, self.list_ids[lists], 0)

    def only_features(self, keep: np.ndarray) -> "ListData":
        """The same rows holding only the features where ``keep`` (bool [F]) is True (a sparse
        model's support: what a service would fetch)."""
        k = keep[self.feat_index]
        row = self.feature_rows()
        offsets = np.r_[0, np.cumsum(np.bincount(row[k], minlength=self.n_rows))].astype(np.int64)
        return ListData(self.list_offsets, self.labels, offsets, self.feat_index[k], self.feat_value[k],
                        self.n_features, self.list_ids, self.skipped)

    def with_positives(self, threshold: float = 1.0) -> "ListData":
        """The lists with at least one row labelled >= threshold (a list without one teaches no
        pair and scores 1 under NDCG's convention)."""
        best = np.maximum.reduceat(self.labels, self.list_offsets[:-1]) if self.n_rows else self.labels
        return self.take_lists(np.flatnonzero(best >= threshold))

    def scaled_within_lists(self) -> "ListData":
        """Each feature min-max scaled within each list to [0, 1] (the paper's numeric scaling; a
        feature constant in a list becomes 0 there). A row without a stored value holds 0, which
        counts in its list's min and max. The rule is ``scale_within_lists``, model.ts's too."""
        import torch

        nnz_list = np.repeat(self.row_list(), np.diff(self.feat_offsets))
        out = scale_within_lists(torch.from_numpy(nnz_list), torch.from_numpy(self.feat_index),
                                 torch.from_numpy(self.feat_value), torch.from_numpy(np.diff(self.list_offsets)),
                                 self.n_features).numpy()
        return ListData(self.list_offsets, self.labels, self.feat_offsets, self.feat_index, out, self.n_features,
                        self.list_ids, self.skipped)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenated aranges lo[i]:hi[i] -> int64."""
    n = hi - lo
    return np.repeat(lo - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(int(n.sum()))


def read_letor(path: Union[str, Path], query: Optional[Union[str, Path]] = None,
               n_features: Optional[int] = None, one_based: bool = True) -> ListData:
    """Read a LETOR / SVMlight file. Lists come from ``qid:`` tokens or, with ``query`` (a file of
    list sizes, one per line, in the rows' order: LightGBM's ``.query``), from that file; rows
    of one ``qid`` must be consecutive. ``one_based``: feature indices start at 1 (LETOR's).
    ``n_features``: at least this many (test files may not hold the last index)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", source=str(path))
    text = path.read_text(encoding="utf-8", errors="strict")
    tokens = np.array(text.replace("\n", f" {_END} ").split() + [_END])
    end = tokens == _END
    line_of = np.cumsum(end) - end  # 0-based line of each token (the end token belongs to its line)
    comment = np.char.startswith(tokens, "#")
    # a comment runs to its line's end: mark the tokens from '#' on, line by line
    seen = np.maximum.accumulate(np.where(comment, np.arange(len(tokens)), -1))
    line_start = np.r_[0, np.flatnonzero(end)[:-1] + 1]
    in_comment = (seen >= line_start[line_of]) & ~end
    keep = ~end & ~in_comment
    tok, line = tokens[keep], line_of[keep]
    if len(tok) == 0:
        raise DataError("no rows", source=str(path))
    first = np.r_[True, line[1:] != line[:-1]]  # each line's first token: the label
    rows_line = line[first]
    labels = _numbers(tok[first], rows_line, lambda b: f"the label {str(tok[first][b])!r} is not a number", path)
    row_of_tok = np.cumsum(first) - 1
    rest, rest_row = tok[~first], row_of_tok[~first]
    name, sep, value = np.char.partition(rest, ":").T if len(rest) else (rest, rest, rest)
    is_qid = name == "qid"
    feat = ~is_qid
    bad_pair = feat & ((sep != ":") | (np.char.str_len(value) == 0) | ~np.char.isdigit(name))
    if bad_pair.any():
        b = int(np.flatnonzero(bad_pair)[0])
        raise DataError(f"line {rows_line[rest_row[b]] + 1}: {str(rest[b])!r} is not an index:value pair",
                        source=str(path))
    values = _numbers(value[feat], rows_line[rest_row[feat]], lambda b: f"{str(rest[feat][b])!r} has no numeric value",
                      path)
    if not np.isfinite(values).all() or not np.isfinite(labels).all():
        b = np.flatnonzero(~np.isfinite(values))
        where = rows_line[rest_row[feat][b[0]]] if len(b) else rows_line[np.flatnonzero(~np.isfinite(labels))[0]]
        raise DataError(f"line {where + 1}: a value or label is not finite", source=str(path))
    index = name[feat].astype(np.int64) - (1 if one_based else 0)
    if (index < 0).any():
        b = int(np.flatnonzero(index < 0)[0])
        raise DataError(f"line {rows_line[rest_row[feat][b]] + 1}: feature index {name[feat][b]} below "
                        f"{1 if one_based else 0}", source=str(path))
    n_rows = len(labels)
    feat_row = rest_row[feat]
    order = np.argsort(feat_row, kind="stable")
    feat_offsets = np.r_[0, np.cumsum(np.bincount(feat_row, minlength=n_rows))]
    qids = rest[is_qid]
    if query is not None:
        sizes = _query_sizes(Path(query), n_rows, path)
        list_ids = np.arange(len(sizes)).astype(str)
    elif len(qids):
        qid_row = rest_row[is_qid]
        if len(qid_row) != n_rows or len(np.unique(qid_row)) != n_rows:
            missing = np.setdiff1d(np.arange(n_rows), qid_row)
            r = int(missing[0]) if len(missing) else int(qid_row[np.flatnonzero(np.diff(qid_row) == 0)[0]])
            raise DataError(f"line {rows_line[r] + 1}: every row needs exactly one qid", source=str(path))
        q = value[is_qid][np.argsort(qid_row, kind="stable")]
        change = np.r_[True, q[1:] != q[:-1]]
        list_ids = q[change]
        if len(np.unique(list_ids)) != len(list_ids):
            seen_ids, first_at = np.unique(list_ids, return_index=True)
            dup = np.setdiff1d(np.arange(len(list_ids)), first_at)[0]
            r = np.flatnonzero(change)[dup]
            raise DataError(f"line {rows_line[r] + 1}: the rows of qid {list_ids[dup]} are not consecutive",
                            source=str(path))
        sizes = np.diff(np.r_[np.flatnonzero(change), n_rows])
    else:
        raise DataError("no lists: the rows have no qid: and no query file was given (LightGBM's .query: "
                        "one list size per line)", source=str(path))
    list_offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    f = max(int(index.max()) + 1 if len(index) else 0, int(n_features or 0))
    return _without_singles(ListData(list_offsets, labels.astype(np.float32), feat_offsets.astype(np.int64),
                                     index[order], values[order].astype(np.float32), f,
                                     np.asarray(list_ids, dtype=object)), sizes, str(path))


def _without_singles(data: ListData, sizes: np.ndarray, source: str) -> ListData:
    """``data`` without its single-candidate lists (``sizes`` [L]: rows per list), counted in
    ``skipped`` and a warning: a list of one teaches no pair."""
    single = np.flatnonzero(sizes < 2)
    if len(single):
        log.warning("%s: %d list(s) with one candidate skipped (no pair to learn from)", source, len(single))
        data = data.take_lists(np.flatnonzero(sizes >= 2))
        data.skipped = len(single)
    return data


def categorical_features(specs: Sequence, hash_buckets: Optional[int] = None) -> List[CategoricalFeature]:
    """Config entries -> unfitted categorical features: a column name (``brand``), or a mapping
    ``{columns: [segment, price_decile], buckets: 4096, sep: "|"}`` (a cross, hashed, a
    multi-valued column). ``hash_buckets``: the buckets of entries that name none (None: one-hot)."""
    out = []
    for s in specs:
        if isinstance(s, str):
            out.append(CategoricalFeature([s], int(hash_buckets or 0)))
            continue
        s = dict(s)
        unknown = set(s) - {"columns", "buckets", "sep"}
        cols = s.get("columns")
        if unknown or not cols or isinstance(cols, str):
            raise ValueError(f"categorical feature {s!r}: give a column name or {{columns: [names], buckets: N, "
                             f"sep: '|'}}" + (f" (unknown keys {sorted(unknown)})" if unknown else ""))
        buckets = s.get("buckets")
        buckets = int(hash_buckets or 0) if buckets is None else int(buckets)
        if buckets < 0 or (s.get("sep") and len(cols) > 1):
            raise ValueError(f"categorical feature {s!r}: buckets must be >= 0 and only a single column splits on sep")
        out.append(CategoricalFeature([str(c) for c in cols], buckets, str(s.get("sep") or "")))
    return out


def cell_strings(values: pd.Series) -> tuple:
    """A column as (codes int64 [R], distinct values as model.ts receives them: str [U]);
    code -1 is an empty or missing cell. Integers and whole floats are written without a
    fraction ("3", as a client sends it), other numbers as Python prints them."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    u = np.asarray(uniques)
    if u.dtype.kind == "f" and np.isfinite(u).all() and (u == np.round(u)).all():
        u = u.astype(np.int64)
    text = u.astype(str).astype(object) if u.dtype.kind in "iufb" else np.array([str(x) for x in u], dtype=object)
    codes = codes.astype(np.int64)
    empty = np.flatnonzero(text == "")
    if len(empty):
        codes = np.where(np.isin(codes, empty), -1, codes)
    return codes, text


def _feature_values(df: pd.DataFrame, feat: CategoricalFeature) -> tuple:
    """(codes int64 [R] with -1 for an empty cell, the distinct values str [V]) of a categorical
    feature's cells: its column's, or a cross's joined values."""
    parts = [cell_strings(df[c]) for c in feat.columns]
    codes, values = parts[0]
    for c, text in parts[1:]:  # pairwise, refactorised: codes stay below the rows' count
        pair = np.where((codes < 0) | (c < 0), -1, codes * max(len(text), 1) + c)
        new, uniq = pd.factorize(pair)
        uniq = np.asarray(uniq, np.int64)
        ok = uniq >= 0
        joined = np.full(len(uniq), "", dtype=object)
        joined[ok] = values[uniq[ok] // len(text)] + CROSS + text[uniq[ok] % len(text)]
        codes, values = np.where(pair < 0, -1, new).astype(np.int64), joined
    return codes, values


def fit_list_encoding(df: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[CategoricalFeature]
                      ) -> ListEncoding:
    """The encoding of a training table: each one-hot feature's vocabulary is its distinct
    non-empty values (split on ``sep``), sorted."""
    feats = []
    for f in categorical:
        vocab = {}
        if not f.buckets:
            _, values = _feature_values(df, f)
            seen = set()
            for v in values:  # distinct values only
                seen.update(split_values("multi" if f.sep else "categorical", f.sep, v))
            vocab = {v: i for i, v in enumerate(sorted(seen))}
        feats.append(CategoricalFeature(list(f.columns), f.buckets, f.sep, vocab))
    return ListEncoding(list(numeric), feats)


def encode_table(encoder: ListEncoder, df: pd.DataFrame, source: str, available_only: bool = False) -> tuple:
    """A table's rows as features, the rule of ``encoder`` (``ListEncoder.index_of`` run once per
    distinct value): (index int64 [R, m], value float32 [R, m]), -1 where a row has no feature.
    ``available_only``: only the features whose columns the table has (the others are not
    encoded), and a third array, the feature id of each of the m columns (as ``encode_except``'s)."""
    from rankers.data.log import numeric_column

    cols_i, cols_v, owner = [], [], []
    for j, c in enumerate(encoder.numeric):
        if available_only and c not in df.columns:
            continue
        owner.append(j)
        v = df[c]
        present = ~(v.isna().to_numpy() | (v.astype(str).to_numpy() == "")) if v.dtype == object else ~v.isna().to_numpy()
        x = np.zeros(len(df))
        if present.any():
            x[present] = numeric_column(v[present].reset_index(drop=True), source, c, "a numeric feature")
        cols_i.append(np.where(present, j, -1))
        cols_v.append(x.astype(np.float32))
    for j, f in enumerate(encoder.encoding.categorical):
        if available_only and not set(f.columns) <= set(df.columns):
            continue
        codes, values = _feature_values(df, f)
        per_value = [[d for d in (encoder.index_of(j, s)
                                  for s in split_values("multi" if f.sep else "categorical", f.sep, v)) if d >= 0]
                     for v in values]
        width = max([len(p) for p in per_value] + [1])
        table = np.full((len(values) + 1, width), -1, np.int64)  # last row: the empty cell
        for r, p in enumerate(per_value):
            table[r, :len(p)] = p
        idx = table[codes]  # code -1 -> the last row
        cols_i += list(idx.T)
        cols_v += [np.ones(len(df), np.float32)] * width
        owner += [len(encoder.numeric) + j] * width
    if not cols_i:
        cols_i, cols_v = [np.full(len(df), -1, np.int64)], [np.zeros(len(df), np.float32)]
        owner = [-1]
    idx, val = np.stack(cols_i, 1), np.stack(cols_v, 1)
    return (idx, val, np.asarray(owner, np.int64)) if available_only else (idx, val)


def lists_from_rows(list_keys, labels: np.ndarray, idx: np.ndarray, val: np.ndarray, n_features: int,
                    source: str) -> ListData:
    """ListData from table rows: rows grouped by ``list_keys`` [R] in order of first appearance,
    features (idx, val [R, m], -1: none); single-candidate lists skipped and counted."""
    codes, ids = pd.factorize(np.asarray(list_keys))
    order = np.argsort(codes, kind="stable")
    idx, val, labels = idx[order], val[order], labels[order]
    sizes = np.bincount(codes, minlength=len(ids))
    keep = idx >= 0
    return _without_singles(ListData(np.r_[0, np.cumsum(sizes)].astype(np.int64), labels.astype(np.float32),
                                     np.r_[0, np.cumsum(keep.sum(1))].astype(np.int64), idx[keep], val[keep],
                                     n_features, np.asarray(ids, dtype=object)), sizes, source)


def read_list_table(path, list_col: str, label_col: str, numeric: Sequence[str], categorical: Sequence,
                    encoding: Optional[ListEncoding] = None, hash_buckets: Optional[int] = None,
                    ) -> tuple[ListData, ListEncoding]:
    """Impression lists from a CSV or Parquet table: one row per (list, candidate) with the list
    id, a numeric label and feature columns (``categorical``: ``categorical_features`` entries).
    Rows of one list need not be adjacent (they are grouped, in order of first appearance).
    ``encoding``: the training table's (for a test table); None fits one here. Bad cells are
    DataErrors naming file, column and row."""
    from rankers.data.log import read_table

    return list_table(read_table(path), str(path), list_col, label_col, numeric, categorical, encoding, hash_buckets)


def list_table(df: pd.DataFrame, source: str, list_col: str, label_col: str, numeric: Sequence[str],
               categorical: Sequence, encoding: Optional[ListEncoding] = None, hash_buckets: Optional[int] = None,
               ) -> tuple[ListData, ListEncoding]:
    """``read_list_table`` of a table already read (``source`` names it in errors)."""
    from rankers.data.log import numeric_column

    feats = encoding.categorical if encoding is not None else categorical_features(categorical, hash_buckets)
    nums = encoding.numeric if encoding is not None else list(numeric)
    needed = [list_col, label_col, *nums, *[c for f in feats for c in f.columns]]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {list(df.columns)}", source=source)
    if len(df) == 0:
        raise DataError("no rows", source=source)
    lists = df[list_col].astype(str).to_numpy()
    blank = np.flatnonzero((lists == "") | df[list_col].isna().to_numpy())
    if len(blank):
        raise DataError("a row without a list id", source=source, column=list_col, row=int(blank[0]))
    labels = numeric_column(df[label_col], source, label_col, "a label").astype(np.float32)
    enc = encoding or fit_list_encoding(df, nums, feats)
    idx, val = encode_table(ListEncoder(enc), df, source)
    return lists_from_rows(lists, labels, idx, val, enc.n_features, source), enc


def _query_sizes(query: Path, n_rows: int, path: Path) -> np.ndarray:
    if not query.is_file():
        raise DataError("query file not found", source=str(query))
    raw = query.read_text().split()
    try:
        sizes = np.array(raw, dtype=np.int64)
    except ValueError:
        b = _first_bad_number(np.array(raw))
        raise DataError(f"line {b + 1}: {raw[b]!r} is not a list size", source=str(query)) from None
    if (sizes < 1).any():
        raise DataError(f"line {int(np.flatnonzero(sizes < 1)[0]) + 1}: a list size must be >= 1", source=str(query))
    if sizes.sum() != n_rows:
        raise DataError(f"the list sizes sum to {int(sizes.sum())}, but {path.name} has {n_rows} rows",
                        source=str(query))
    return sizes


def _numbers(tokens: np.ndarray, lines: np.ndarray, problem, path: Path) -> np.ndarray:
    """``tokens`` as float64; else a DataError naming the first bad one's line (``lines``: each
    token's 0-based line) and ``problem(its index)``."""
    try:
        return tokens.astype(np.float64)
    except ValueError:
        b = _first_bad_number(tokens)
        raise DataError(f"line {lines[b] + 1}: {problem(b)}", source=str(path)) from None


def _first_bad_number(a: np.ndarray) -> int:
    for i, s in enumerate(a):  # only after the vectorised conversion failed: finds the culprit
        try:
            float(s)
        except ValueError:
            return i
    return 0
