"""Impression lists from LETOR / SVMlight text: qid or query-file lists, comments, bad lines named,
single-candidate lists skipped and counted, min-max scaling within lists."""
import numpy as np
import pytest

from rankers.data.errors import DataError
from rankers.data.lists import read_letor

LETOR = """2 qid:10 1:0.5 3:2.0 # doc a
0 qid:10 2:1.0
1 qid:10 1:1.5 2:3.0
1 qid:7 3:1.0
0 qid:7 1:4.0
3 qid:8 2:1.0
"""


def test_qid_lists_comments_and_a_single_candidate_list(tmp_path, caplog):
    f = tmp_path / "a.txt"
    f.write_text(LETOR)
    d = read_letor(f)
    assert d.n_lists == 2 and d.skipped == 1 and list(d.list_ids) == ["10", "7"]
    assert d.list_offsets.tolist() == [0, 3, 5] and d.labels.tolist() == [2, 0, 1, 1, 0]
    assert d.n_features == 3
    rows = [sorted(zip(d.feat_index[a:b].tolist(), d.feat_value[a:b].tolist()))
            for a, b in zip(d.feat_offsets[:-1], d.feat_offsets[1:])]
    assert rows[0] == [(0, 0.5), (2, 2.0)] and rows[2] == [(0, 1.5), (1, 3.0)] and rows[4] == [(0, 4.0)]
    assert "1 list(s) with one candidate skipped" in caplog.text


def test_a_query_file_gives_the_lists(tmp_path):
    f, q = tmp_path / "r.train", tmp_path / "r.train.query"
    f.write_text("1 1:1\n0 2:1\n2 1:3\n0 1:1 2:2\n")
    q.write_text("3\n1\n")
    d = read_letor(f, q, n_features=10)
    assert d.n_lists == 1 and d.skipped == 1 and d.n_features == 10 and d.labels.tolist() == [1, 0, 2]


@pytest.mark.parametrize("text, query, match", [
    ("1 qid:1 1:0.5\n0 qid:1 1:abc\n", None, r"line 2: '1:abc' has no numeric value"),
    ("1 qid:1 1:0.5\n0 qid:1 x:1\n", None, r"line 2: 'x:1' is not an index:value pair"),
    ("1 qid:1 1:0.5\n0 qid:1 5\n", None, r"line 2: '5' is not an index:value pair"),
    ("1 qid:1 1:0.5\nhigh qid:1 1:1\n", None, r"line 2: the label 'high' is not a number"),
    ("1 qid:1 0:0.5\n0 qid:1 1:1\n", None, r"line 1: feature index 0 below 1"),
    ("1 qid:1 1:1\n0 qid:2 1:1\n1 qid:1 1:1\n", None, r"line 3: the rows of qid 1 are not consecutive"),
    ("1 qid:1 1:1\n0 1:1\n", None, r"line 2: every row needs exactly one qid"),
    ("1 1:1\n0 1:1\n", None, "no qid: and no query file"),
    ("1 1:1\n0 1:1\n1 1:2\n", "2\n2\n", r"the list sizes sum to 4, but .* has 3 rows"),
    ("1 1:1\n0 1:1\n", "two\n", r"line 1: 'two' is not a list size"),
    ("1 qid:1 1:nan\n0 qid:1 1:1\n", None, r"line 1: a value or label is not finite"),
])
def test_bad_input_names_the_file_and_line(tmp_path, text, query, match):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    q = None
    if query is not None:
        q = tmp_path / "bad.query"
        q.write_text(query)
    with pytest.raises(DataError, match=match):
        read_letor(f, q)


def test_features_are_scaled_within_each_list_with_missing_values_as_zero(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("1 qid:1 1:2 2:5\n0 qid:1 1:4\n1 qid:1 1:6 2:5\n0 qid:2 1:10 2:1\n1 qid:2 1:20 2:3\n")
    d = read_letor(f).scaled_within_lists()
    dense = np.zeros((d.n_rows, d.n_features))
    dense[np.repeat(np.arange(d.n_rows), np.diff(d.feat_offsets)), d.feat_index] = d.feat_value
    # list 1: feature 1 in [2, 6]; feature 2 in [0 (row 2 lacks it), 5]; list 2: [10, 20] and [1, 3]
    np.testing.assert_allclose(dense, [[0, 1], [0.5, 0], [1, 1], [0, 0], [1, 1]])
    sub = d.take_lists(np.array([1]))
    assert sub.n_lists == 1 and sub.labels.tolist() == [0, 1] and list(sub.list_ids) == ["2"]


def test_only_features_keeps_the_rows_and_drops_the_other_features(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("1 qid:1 1:2 2:5 3:1\n0 qid:1 2:4\n")
    d = read_letor(f).only_features(np.array([True, False, True]))
    assert d.n_rows == 2 and d.feat_offsets.tolist() == [0, 2, 2] and d.feat_index.tolist() == [0, 2]
    assert d.feat_value.tolist() == [2.0, 1.0] and d.n_features == 3


def test_a_list_table_one_hot_or_hashed(tmp_path):
    import pandas as pd

    from rankers.data.lists import read_list_table

    rows = pd.DataFrame({"list_id": ["a", "b", "a", "b", "a", "c"], "label": [1, 0, 0, 2, 0, 1],
                         "price": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "brand": ["x", "y", "x", "", "z", "x"]})
    rows.to_csv(tmp_path / "train.csv", index=False)
    d, enc = read_list_table(tmp_path / "train.csv", "list_id", "label", ["price"], ["brand"])
    assert list(d.list_ids) == ["a", "b"] and d.skipped == 1  # list c has one row
    assert d.labels.tolist() == [1, 0, 0, 0, 2] and enc.names() == ["price", "brand=x", "brand=y", "brand=z"]
    assert d.feat_index.tolist() == [0, 1, 0, 1, 0, 3, 0, 2, 0]  # row b2 has no brand
    test = pd.DataFrame({"list_id": ["t", "t"], "label": [1, 0], "price": [1.0, 2.0], "brand": ["w", "y"]})
    test.to_csv(tmp_path / "test.csv", index=False)
    t, _ = read_list_table(tmp_path / "test.csv", "list_id", "label", ["price"], ["brand"], encoding=enc)
    assert t.feat_index.tolist() == [0, 0, 2] and t.n_features == 4  # an unseen brand has no feature
    h, henc = read_list_table(tmp_path / "train.csv", "list_id", "label", [], ["brand"], hash_buckets=8)
    assert henc.n_features == 8 and h.feat_index.max() < 8
    rows.assign(label=["1", "x", "0", "2", "0", "1"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv.*column 'label'.*row 1"):
        read_list_table(tmp_path / "bad.csv", "list_id", "label", ["price"], ["brand"])
    with pytest.raises(DataError, match=r"missing column\(s\) \['colour'\]"):
        read_list_table(tmp_path / "train.csv", "list_id", "label", [], ["colour"])
