"""The one encoding of impression-list columns (ListEncoder) and the one within-list scaling:
the table path (vectorised over distinct values), the eager module and its TorchScript form
give the same features; bad cells are named."""
import numpy as np
import pandas as pd
import pytest
import torch

from rankers.data.errors import DataError
from rankers.data.lists import ListData, categorical_features, encode_table, fit_list_encoding, list_table
from rankers.model.list_encoder import ListEncoder, fnv1a, scale_within_lists


def table(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "list_id": np.repeat(np.arange(n // 6), 6), "label": rng.integers(0, 3, n).astype(float),
        "price": np.round(rng.random(n) * 100, 2), "rank": rng.integers(0, 5, n),
        "brand": rng.choice(["a", "b", "c", ""], n), "seg": rng.choice(["lo", "hi"], n),
        "decile": rng.integers(0, 10, n), "user_id": rng.choice(["u1", "u2", "u3"], n),
        "styles": rng.choice(["x|y", "y", "z|x|y", ""], n)})


SPECS = ["brand", {"columns": ["seg", "decile"]}, {"columns": ["user_id", "brand"], "buckets": 32},
         {"columns": ["styles"], "sep": "|"}]


def coo(idx, val):
    rows = np.repeat(np.arange(idx.shape[0]), (idx >= 0).sum(1))
    keep = idx >= 0
    return sorted(zip(rows.tolist(), idx[keep].tolist(), np.round(val[keep], 5).tolist()))


def test_table_eager_and_scripted_encodings_agree():
    df = table()
    enc = fit_list_encoding(df, ["price", "rank"], categorical_features(SPECS))
    assert enc.names()[:4] == ["price", "rank", "brand=a", "brand=b"] and "seg x decile=hi x 3" in enc.names()
    assert enc.n_features == 2 + 3 + len(set(zip(df.seg, df.decile))) + 32 + 3
    eager = ListEncoder(enc)
    scripted = torch.jit.script(ListEncoder(enc))
    idx, val = encode_table(eager, df, "t.csv")
    want = coo(idx, val)
    cols = {c: [str(x) for x in df[c]] for c in ["price", "rank", "brand", "seg", "decile", "user_id", "styles"]}
    for m in (eager, scripted):
        i, v, r = m.encode(cols, {}, len(df))
        assert sorted(zip(r.tolist(), i.tolist(), np.round(v.numpy(), 5).tolist())) == want
    # a row with brand "" has no brand feature and no user x brand cross; styles split on "|"
    row = int(np.flatnonzero(df["brand"] == "")[0])
    assert not any(r == row and 2 <= d < 5 for r, d, _ in want)
    z = int(np.flatnonzero(df["styles"] == "z|x|y")[0])
    assert sum(1 for r, d, _ in want if r == z and d >= enc.n_features - 3) == 3
    # numbers given as numbers are the same features
    i, v, r = eager.encode({k: c for k, c in cols.items() if k != "price"},
                           {"price": torch.tensor(df["price"].to_numpy())}, len(df))
    assert sorted(zip(r.tolist(), i.tolist(), np.round(v.numpy(), 5).tolist())) == want


def test_unseen_values_set_nothing_and_hashes_are_fnv1a():
    enc = fit_list_encoding(table(), [], categorical_features(["brand", {"columns": ["seg"], "buckets": 7}]))
    e = ListEncoder(enc)
    i, _, r = e.encode({"brand": ["zzz", "a"], "seg": ["new", ""]}, {}, 2)
    assert sorted(zip(r.tolist(), i.tolist())) == [(0, 3 + fnv1a("new") % 7), (1, 0)]
    assert fnv1a("a") == 0xE40C292C and fnv1a("") == 2166136261  # the published FNV-1a 32 vectors


def test_bad_cells_are_named():
    e = torch.jit.script(ListEncoder(fit_list_encoding(table(), ["price"], categorical_features(["brand"]))))
    with pytest.raises(torch.jit.Error, match="numeric column 'price' row 1 got '1,5'"):
        e.encode({"price": ["2", "1,5"]}, {}, 2)
    with pytest.raises(torch.jit.Error, match="column 'brand' has 1 values for 2 candidates"):
        e.encode({"brand": ["a"]}, {}, 2)
    with pytest.raises(torch.jit.Error, match="needs 2 finite numbers"):
        e.encode({}, {"price": torch.tensor([1.0, float("nan")], dtype=torch.float64)}, 2)
    df = table()
    df["price"] = df["price"].astype(object)
    df.loc[7, "price"] = "cheap"
    with pytest.raises(DataError, match=r"t.csv.*column 'price'.*row 7"):
        list_table(df, "t.csv", "list_id", "label", ["price"], ["brand"])
    with pytest.raises(ValueError, match="give a column name or"):
        categorical_features([{"column": "brand"}])


def test_scaling_within_lists_matches_a_per_list_reference():
    rng = np.random.default_rng(3)
    sizes = rng.integers(2, 7, 40)
    offsets = np.r_[0, np.cumsum(sizes)]
    n_rows, n_feat = int(offsets[-1]), 6
    dense = np.where(rng.random((n_rows, n_feat)) < 0.6, rng.normal(size=(n_rows, n_feat)), np.nan)
    rows, feats = np.nonzero(~np.isnan(dense))
    d = ListData(offsets, np.zeros(n_rows, np.float32), np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))],
                 feats.astype(np.int64), dense[rows, feats].astype(np.float32), n_feat, np.arange(40).astype(object))
    got = d.scaled_within_lists().feat_value
    for lst in range(40):
        block = np.nan_to_num(dense[offsets[lst]:offsets[lst + 1]].astype(np.float32).astype(np.float64), nan=0.0)
        lo, hi = block.min(0), block.max(0)
        ref = np.where(hi > lo, (block - lo) / np.where(hi > lo, hi - lo, 1), 0.0)
        sel = (rows >= offsets[lst]) & (rows < offsets[lst + 1])
        np.testing.assert_allclose(got[sel], ref[rows[sel] - offsets[lst], feats[sel]], atol=1e-6)
    one = scale_within_lists(torch.zeros(3, dtype=torch.int64), torch.tensor([0, 0, 1]), torch.tensor([2.0, 4.0, 5.0]),
                             torch.tensor([3]), 2)
    assert one.tolist() == [0.5, 1.0, 1.0]  # the third row's implicit 0 counts for feature 0
