"""Logs as a directory of Parquet files: the same events as the CSV reader, errors that name the file."""
import numpy as np
import pandas as pd
import pytest

from rankers.data.errors import DataError
from rankers.data.eventlog import EventLog
from rankers.data.files import FileSource
from rankers.data.log import DEFAULT_GRADES, validate_log
from rankers.data.parquet import read_log

pytest.importorskip("pyarrow")


def log_frame(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": [f"u{j}" for j in rng.integers(0, 40, n)],
                         "item_id": [f"i{j}" for j in rng.integers(0, 30, n)],
                         "event": rng.choice(["view", "Cart ", "purchase"], n),
                         "timestamp": rng.integers(0, 10_000, n), "weight": rng.random(n)})


def rows(g: EventLog):
    return sorted(zip(g.user_ids[g.user], g.item_ids[g.item], g.grade.tolist(), g.timestamp.tolist()))


def split_into_files(df, d, parts=3):
    d.mkdir()
    bounds = np.linspace(0, len(df), parts + 1).astype(int)
    for k in range(parts):
        df.iloc[bounds[k]:bounds[k + 1]].to_parquet(d / f"part-{k}.parquet", index=False)
    return d


def test_a_parquet_directory_reads_as_the_csv_does(tmp_path):
    df = log_frame()
    d = split_into_files(df, tmp_path / "events")
    (d / "_SUCCESS").write_text("")  # Spark's marker files are skipped
    got = read_log(d, DEFAULT_GRADES).deduplicate()
    want = EventLog.from_frame(validate_log(df.astype(str), "csv", DEFAULT_GRADES)).deduplicate()
    assert rows(got) == rows(want)
    # integer ids are ids too
    df2 = df.assign(user_id=df.user_id.str[1:].astype(int))
    df2.to_parquet(tmp_path / "int.parquet", index=False)
    assert set(read_log(tmp_path / "int.parquet", DEFAULT_GRADES).user_ids) == set(df.user_id.str[1:])


def test_a_file_of_another_schema_is_named(tmp_path):
    d = split_into_files(log_frame(), tmp_path / "events")
    log_frame().drop(columns=["user_id"]).to_parquet(d / "part-9.parquet", index=False)
    with pytest.raises(DataError, match=r"part-9.parquet: missing column\(s\) \['user_id'\]"):
        read_log(d, DEFAULT_GRADES)


def test_a_corrupt_file_is_named(tmp_path):
    d = split_into_files(log_frame(), tmp_path / "events")
    (d / "part-1.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"part-1.parquet: cannot read as Parquet"):
        read_log(d, DEFAULT_GRADES)


@pytest.mark.parametrize("column, value, message", [
    ("event", "wishlist", r"part-0.parquet, column 'event', row 5: unknown event 'wishlist'"),
    ("item_id", "", r"part-0.parquet, column 'item_id', row 5: empty id"),
    ("timestamp", np.inf, r"part-0.parquet, column 'timestamp', row 5: a timestamp must be a finite number"),
    ("weight", -1.0, r"part-0.parquet, column 'weight', row 5: a weight must be >= 0"),
])
def test_a_bad_row_names_file_column_and_row(tmp_path, column, value, message):
    df = log_frame()
    df[column] = df[column].astype(object)
    df.loc[5, column] = value
    d = split_into_files(df, tmp_path / "events")
    with pytest.raises(DataError, match=message):
        read_log(d, DEFAULT_GRADES)


def test_files_source_reads_directories_and_splits_without_a_test_file(tmp_path):
    from tests.conftest import prep

    d = split_into_files(log_frame(2000), tmp_path / "events")
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(30)], "brand": list("abc") * 10})
    split_into_files(items, tmp_path / "items", parts=2)
    raw = FileSource(str(d), None, str(tmp_path / "items"), None, ["brand"]).load()
    assert raw.test_log is None and len(raw.items) == 30
    data = prep(raw, 2.0)
    assert len(data.test.users) > 0 and data.item_vocab.vocab["brand"].keys() >= {"a", "b", "c"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no Parquet files"):
        FileSource(str(tmp_path / "empty"), None).load()


def test_a_uri_reads_through_pyarrows_filesystems(tmp_path):
    # file:// stands in for s3:// or gs://: the same code path (pyarrow.fs.FileSystem.from_uri)
    df = log_frame()
    d = split_into_files(df, tmp_path / "events")
    (d / ".part-0.parquet.crc").write_bytes(b"x")  # hidden files are skipped there too
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(30)], "brand": list("abc") * 10})
    split_into_files(items, tmp_path / "items", parts=2)
    uri = d.as_uri()
    assert rows(read_log(uri + "/", DEFAULT_GRADES)) == rows(read_log(d, DEFAULT_GRADES))
    raw = FileSource(uri, None, (tmp_path / "items").as_uri(), None, ["brand"]).load()
    assert len(raw.items) == 30 and raw.name == uri
    with pytest.raises(DataError, match="CSV is read from local paths"):
        FileSource(uri, None, (tmp_path / "items.csv").as_uri(), None, ["brand"]).load()
    with pytest.raises(DataError, match=r"nowhere: file not found"):
        read_log((tmp_path / "nowhere").as_uri(), DEFAULT_GRADES)
    (d / "part-1.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="^" + uri + r"/part-1.parquet: cannot read as Parquet"):
        read_log(uri, DEFAULT_GRADES)


def test_parquet_without_pyarrow_is_a_data_error_naming_the_fix(tmp_path, monkeypatch):
    import sys

    from rankers.data.files import FileSource
    pq_path = tmp_path / "log.parquet"
    pq_path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(DataError, match=r"reading Parquet needs pyarrow: pip install pyarrow"):
        FileSource(str(pq_path), None).load()
