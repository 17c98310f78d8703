import pandas as pd
import pytest

from rankers.data.errors import DataError
from rankers.data.eventlog import EventLog
from rankers.data.log import DEFAULT_GRADES, read_table, validate_log


def frame(**cols):
    base = {"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i2", "i1"], "event": ["view", "purchase", "cart"],
            "timestamp": ["10", "20", "30"]}
    base.update(cols)
    return pd.DataFrame(base)


def test_valid_log_is_graded():
    out = validate_log(frame(), "log.csv", DEFAULT_GRADES)
    assert out["grade"].tolist() == [1.0, 3.0, 2.0]
    assert out["weight"].tolist() == [1.0, 1.0, 1.0]
    assert out["timestamp"].tolist() == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("change, match", [
    ({"event": ["view", "wishlist", "cart"]}, r"log.csv, column 'event', row 1: unknown event 'wishlist'"),
    ({"timestamp": ["10", "yesterday", "30"]}, r"column 'timestamp', row 1: a timestamp must be a finite number"),
    ({"user_id": ["u1", None, "u2"]}, r"column 'user_id', row 1: empty id"),
    ({"weight": ["1", "nan", "1"]}, r"column 'weight', row 1"),
    ({"weight": ["1", "1e39", "1"]}, r"column 'weight', row 1: a weight must be a finite number within \+-3.40282e\+38"),
    ({"weight": ["1", "-2", "1"]}, r"column 'weight', row 1: a weight must be >= 0, got '-2'"),
])
def test_bad_rows_are_named(change, match):
    with pytest.raises(DataError, match=match):
        validate_log(frame(**change), "log.csv", DEFAULT_GRADES)


def test_missing_column_and_empty_log():
    with pytest.raises(DataError, match=r"missing column\(s\) \['event'\]"):
        validate_log(frame().drop(columns=["event"]), "log.csv", DEFAULT_GRADES)
    with pytest.raises(DataError, match="empty"):
        validate_log(frame().iloc[:0], "log.csv", DEFAULT_GRADES)


def test_ratings_out_of_scale_are_errors_not_clipped():
    df = frame(event=["4", "6", "1"])
    with pytest.raises(DataError, match=r"row 1: rating 6 outside the scale \[1, 5\]"):
        validate_log(df, "ratings.csv", None, rating_scale=(1, 5))
    with pytest.raises(DataError, match="row 1: a rating must be a finite number within .*, got 'x'"):
        validate_log(frame(event=["4", "x", "1"]), "ratings.csv", None)


def test_duplicates_keep_the_highest_grade_once():
    df = pd.DataFrame({"user_id": ["u1"] * 4 + ["u2"], "item_id": ["i1", "i1", "i1", "i2", "i1"],
                       "event": ["view", "purchase", "cart", "view", "view"], "timestamp": [1, 2, 3, 4, 5]})
    out = EventLog.from_frame(validate_log(df, "log", DEFAULT_GRADES)).deduplicate()
    assert len(out) == 3
    row = (out.user_ids[out.user] == "u1") & (out.item_ids[out.item] == "i1")
    assert out.grade[row].tolist() == [3.0] and out.timestamp[row].tolist() == [2.0]
    assert out.timestamp.tolist() == sorted(out.timestamp.tolist())  # in time order


def test_deduplication_does_not_depend_on_row_order_or_id_numbering():
    import numpy as np

    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame({"user_id": [f"u{j}" for j in rng.integers(0, 20, n)],
                       "item_id": [f"i{j}" for j in rng.integers(0, 15, n)],
                       "event": rng.choice(["view", "cart", "purchase"], n), "timestamp": rng.integers(0, 50, n)})
    base = EventLog.from_frame(validate_log(df, "log", DEFAULT_GRADES)).deduplicate()
    rows = lambda g: list(zip(g.user_ids[g.user], g.item_ids[g.item], g.grade, g.timestamp))  # noqa: E731
    shuffled = EventLog.from_frame(validate_log(df.sample(frac=1, random_state=1), "log", DEFAULT_GRADES))
    assert rows(shuffled.deduplicate()) == rows(base)
    # the highest grade wins, the latest among equals
    for (u, i), g in df.assign(grade=df.event.map(DEFAULT_GRADES)).groupby(["user_id", "item_id"]):
        best = g[g.grade == g.grade.max()].timestamp.max()
        hit = [r for r in rows(base) if r[0] == u and r[1] == i]
        assert len(hit) == 1 and hit[0][2] == g.grade.max() and hit[0][3] == best


def test_read_table_names_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    p = tmp_path / "log.csv"
    frame().to_csv(p, index=False)
    assert read_table(p)["event"].tolist() == ["view", "purchase", "cart"]
