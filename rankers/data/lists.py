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
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from rankers.data.errors import DataError

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
        counts in its list's min and max."""
        row_list = self.row_list()
        nnz_list = np.repeat(row_list, np.diff(self.feat_offsets))
        key = nnz_list * self.n_features + self.feat_index
        order = np.argsort(key, kind="stable")
        k, v = key[order], self.feat_value[order].astype(np.float64)
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        lo, hi = np.minimum.reduceat(v, starts), np.maximum.reduceat(v, starts)
        counts = np.diff(np.r_[starts, len(k)])
        sizes = np.diff(self.list_offsets)[k[starts] // self.n_features]
        implicit_zero = counts < sizes
        lo, hi = np.where(implicit_zero, np.minimum(lo, 0.0), lo), np.where(implicit_zero, np.maximum(hi, 0.0), hi)
        group = np.repeat(np.arange(len(starts)), counts)
        span = (hi - lo)[group]
        scaled = np.where(span > 0, (v - lo[group]) / np.where(span > 0, span, 1.0), 0.0)
        out = np.empty(len(v), np.float32)
        out[order] = scaled
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
    data = ListData(list_offsets, labels.astype(np.float32), feat_offsets.astype(np.int64), index[order],
                    values[order].astype(np.float32), f, np.asarray(list_ids, dtype=object))
    single = np.flatnonzero(sizes < 2)
    if len(single):
        log.warning("%s: %d list(s) with one candidate skipped (no pair to learn from)", path, len(single))
        data = data.take_lists(np.flatnonzero(sizes >= 2))
        data.skipped = len(single)
    return data


@dataclass
class ListTableEncoding:
    """How a list table's columns become features (fitted on the training table, applied to
    the test table alike): ``numeric`` columns one dimension each, then each ``categorical``
    column one-hot over its training values (``vocab``; an unseen value has no feature) or,
    with ``hash_buckets``, hashed into that many dimensions (unseen values too)."""

    numeric: List[str]
    categorical: List[str]
    hash_buckets: Optional[int]
    vocab: Dict[str, np.ndarray]

    @classmethod
    def fit(cls, df, numeric: Sequence[str], categorical: Sequence[str], hash_buckets: Optional[int]):
        vocab = {}
        for c in ([] if hash_buckets else categorical):
            v = np.unique(df[c].fillna("").astype(str).to_numpy())
            vocab[c] = v[v != ""]  # a missing value is no feature
        return cls(list(numeric), list(categorical), hash_buckets, vocab)

    @property
    def n_features(self) -> int:
        cats = len(self.categorical) * self.hash_buckets if self.hash_buckets else sum(map(len, self.vocab.values()))
        return len(self.numeric) + cats

    def names(self) -> List[str]:
        out = list(self.numeric)
        for c in self.categorical:
            out += [f"{c}#{b}" for b in range(self.hash_buckets)] if self.hash_buckets else \
                [f"{c}={v}" for v in self.vocab[c]]
        return out

    def encode(self, df, source: str) -> tuple:
        """(index int64 [R, m], value float32 [R, m]) with -1 where a row has no feature."""
        from rankers.data.log import numeric_column

        cols_i, cols_v = [], []
        for j, c in enumerate(self.numeric):
            cols_i.append(np.full(len(df), j, np.int64))
            cols_v.append(numeric_column(df[c], source, c, "a numeric feature").astype(np.float32))
        at = len(self.numeric)
        for c in self.categorical:
            vals = df[c].fillna("").astype(str).to_numpy()
            if self.hash_buckets:
                codes = pd.util.hash_array(vals.astype(object), categorize=True).astype(np.uint64)
                idx = at + (codes % np.uint64(self.hash_buckets)).astype(np.int64)
                at += self.hash_buckets
            else:
                voc = self.vocab[c]
                pos = np.minimum(np.searchsorted(voc, vals), max(len(voc) - 1, 0))
                idx = np.where(voc[pos] == vals, at + pos, -1).astype(np.int64) if len(voc) else \
                    np.full(len(vals), -1, np.int64)
                at += len(voc)
            idx = np.where(vals == "", -1, idx)  # a missing value is no feature
            cols_i.append(idx)
            cols_v.append(np.ones(len(df), np.float32))
        return np.stack(cols_i, 1), np.stack(cols_v, 1)


def read_list_table(path, list_col: str, label_col: str, numeric: Sequence[str], categorical: Sequence[str],
                    encoding: Optional[ListTableEncoding] = None, hash_buckets: Optional[int] = None,
                    ) -> tuple[ListData, ListTableEncoding]:
    """Impression lists from a CSV or Parquet table: one row per (list, candidate) with the list
    id, a numeric label and feature columns. Rows of one list need not be adjacent (they are
    grouped, in order of first appearance). ``encoding``: the training table's (for a test
    table); None fits one here. Bad cells are DataErrors naming file, column and row."""
    from rankers.data.log import numeric_column, read_table

    source = str(path)
    df = read_table(path)
    missing = [c for c in [list_col, label_col, *numeric, *categorical] if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; found {list(df.columns)}", source=source)
    if len(df) == 0:
        raise DataError("no rows", source=source)
    lists = df[list_col].astype(str).to_numpy()
    blank = np.flatnonzero((lists == "") | df[list_col].isna().to_numpy())
    if len(blank):
        raise DataError("a row without a list id", source=source, column=list_col, row=int(blank[0]))
    labels = numeric_column(df[label_col], source, label_col, "a label").astype(np.float32)
    enc = encoding or ListTableEncoding.fit(df, numeric, categorical, hash_buckets)
    idx, val = enc.encode(df, source)
    codes, ids = pd.factorize(lists)  # lists in order of first appearance
    order = np.argsort(codes, kind="stable")
    idx, val, labels = idx[order], val[order], labels[order]
    sizes = np.bincount(codes, minlength=len(ids))
    keep = idx >= 0
    data = ListData(np.r_[0, np.cumsum(sizes)].astype(np.int64), labels,
                    np.r_[0, np.cumsum(keep.sum(1))].astype(np.int64), idx[keep], val[keep], enc.n_features,
                    np.asarray(ids, dtype=object))
    single = np.flatnonzero(sizes < 2)
    if len(single):
        log.warning("%s: %d list(s) with one candidate skipped (no pair to learn from)", source, len(single))
        data = data.take_lists(np.flatnonzero(sizes >= 2))
        data.skipped = len(single)
    return data, enc


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
