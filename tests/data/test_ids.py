"""One rule for ids in every reader: blanks stripped, whole numbers as integers, missing-value
markers refused with the row; list-typed Parquet feature columns are multi-valued features."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rankers.data.errors import DataError
from rankers.data.files import FileSource
from rankers.data.ids import normalise_ids


def test_blanks_around_an_id_are_not_part_of_it(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,event\n u1 ,i1,view\nu1, i2 ,cart\nu2,i1 ,view\n")
    raw = FileSource(str(tmp_path / "log.csv"), None).load()
    assert list(raw.log.user_ids) == ["u1", "u2"] and list(raw.log.item_ids) == ["i1", "i2"]


@pytest.mark.parametrize("cell, message", [
    ("NaN", "id 'NaN' is a missing-value marker"), ("None", "id 'None' is a missing-value marker"),
    ("NULL", "id 'NULL' is a missing-value marker"), ("n/a", "id 'n/a' is a missing-value marker"),
    ("   ", "empty id \\(blank\\)"), ("", "empty id"),
])
def test_missing_value_markers_are_not_ids(tmp_path, cell, message):
    (tmp_path / "log.csv").write_text(f"user_id,item_id,event\nu1,i1,view\n{cell},i2,view\n")
    with pytest.raises(DataError, match=f"log.csv, column 'user_id', row 1: {message}"):
        FileSource(str(tmp_path / "log.csv"), None).load()


def test_parquet_ids_of_float_and_int_type_are_the_same_ids(tmp_path):
    # a pandas column with a missing value becomes float: 1.0 in train, 1 in test used to differ
    pq.write_table(pa.table({"user_id": [1.0, 1.0, 2.0, 2.0], "item_id": [10.0, 11.0, 10.0, 12.0],
                             "rating": [5, 4, 3, 5]}), tmp_path / "train.parquet")
    pq.write_table(pa.table({"user_id": [1, 2], "item_id": [12, 11], "rating": [5, 5]}), tmp_path / "test.parquet")
    raw = FileSource(str(tmp_path / "train.parquet"), str(tmp_path / "test.parquet")).load()
    assert list(raw.log.user_ids) == list(raw.test_log.user_ids) == ["1", "2"]
    assert list(raw.log.item_ids) == ["10", "11", "12"] and list(raw.test_log.item_ids) == ["11", "12"]


@pytest.mark.parametrize("column, message", [
    (pa.array([1.0, 1.5]), r"row 1: id 1.5 is a number but not a whole one"),
    (pa.array([1.0, None]), r"row 1: empty id \(a missing cell\)"),
    (pa.array(["u1", "null"]), r"row 1: id 'null' is a missing-value marker"),
    (pa.array([[1], [2]]), r"ids must be text or integers, got a column of type list<"),
])
def test_parquet_ids_that_are_not_ids_name_the_row(tmp_path, column, message):
    pq.write_table(pa.table({"user_id": column, "item_id": ["a", "b"], "rating": [5, 4]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=f"t.parquet, column 'user_id'.*{message}"):
        FileSource(str(tmp_path / "t.parquet"), None).load()


def test_a_list_column_is_a_multi_valued_feature(tmp_path):
    pq.write_table(pa.table({"user_id": ["u1", "u1", "u2"], "item_id": [10, 11, 12], "rating": [5, 4, 5]}),
                   tmp_path / "log.parquet")
    pq.write_table(pa.table({"item_id": [10.0, 11.0, 12.0], "tags": [["a", "b"], ["b"], []], "genre": ["x", "y", None]}),
                   tmp_path / "items.parquet")
    raw = FileSource(str(tmp_path / "log.parquet"), None, items=str(tmp_path / "items.parquet"),
                     item_features=["tags", "genre"]).load()
    assert [(s.name, s.kind) for s in raw.item_specs] == [("tags", "multi"), ("genre", "categorical")]
    # was "['a' 'b']", one token; the table's float keys are the log's integer ids
    assert raw.items["tags"].to_dict() == {"10": "a|b", "11": "b", "12": ""}
    with pytest.raises(DataError, match=r"items.parquet, column 'tags', row 0: holds lists \(\['a', 'b'\]\): "
                                         r"declare the feature with kind: multi"):
        FileSource(str(tmp_path / "log.parquet"), None, items=str(tmp_path / "items.parquet"),
                   item_features=[{"name": "tags", "kind": "categorical"}]).load()
    pq.write_table(pa.table({"item_id": [10], "tags": [["a|b"]]}), tmp_path / "items.parquet")
    with pytest.raises(DataError, match=r"column 'tags', row 0: value 'a\|b' holds the multi field's separator"):
        FileSource(str(tmp_path / "log.parquet"), None, items=str(tmp_path / "items.parquet"),
                   item_features=["tags"]).load()


def test_normalising_works_on_distinct_values_and_keeps_big_integers():
    ids = normalise_ids(pd.Series(np.array([2 ** 62 + 1, 7, 2 ** 62 + 1], dtype=np.int64)), "t", "user_id")
    assert list(ids) == [str(2 ** 62 + 1), "7", str(2 ** 62 + 1)]
