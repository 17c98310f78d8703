"""data=files and data=movielens readers on small generated files in the real formats."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rankers.data.errors import DataError
from rankers.data.files import FileSource
from rankers.data.movielens import MovieLensSource
from tests.conftest import LEAVE_LAST, prep

ML100K = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-100k"


def write_ml100k(d: Path, n_users=30, n_items=40, seed=0, split="ua"):
    """A tiny folder in the MovieLens-100k format (tab-separated ratings, |-separated tables)."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1), 15, replace=False):
            rows.append((u, int(i), int(rng.integers(1, 6)), int(rng.integers(8.8e8, 8.9e8))))
    df = pd.DataFrame(rows)
    test_mask = df.groupby(0).cumcount() >= 12
    df[~test_mask].to_csv(d / f"{split}.base", sep="\t", header=False, index=False)
    df[test_mask].to_csv(d / f"{split}.test", sep="\t", header=False, index=False)
    df.to_csv(d / "u.data", sep="\t", header=False, index=False)
    with open(d / "u.user", "w") as f:
        for u in range(1, n_users + 1):
            f.write(f"{u}|{int(rng.integers(15, 70))}|{'MF'[u % 2]}|{['student', 'writer', 'other'][u % 3]}|{10000 + u}\n")
    with open(d / "u.item", "w", encoding="latin-1") as f:
        for i in range(1, n_items + 1):
            flags = ["0"] * 19
            for g in rng.choice(19, 2, replace=False):
                flags[g] = "1"
            f.write(f"{i}|Movie {i} (199{i % 10})|01-Jan-199{i % 10}||http://x|" + "|".join(flags) + "\n")
    return d


def test_ml100k_format_loads_with_features(tmp_path):
    d = write_ml100k(tmp_path / "ml")
    raw = MovieLensSource(str(d), "ua", True, True).load()
    assert raw.test_log is not None and ((raw.log.grade >= 1) & (raw.log.grade <= 5)).all()
    assert {s.name for s in raw.user_specs} == {"age_band", "gender", "occupation", "zip_prefix"}
    assert {s.name: s.kind for s in raw.item_specs} == {"genres": "multi", "decade": "categorical"}
    assert raw.items.loc["1", "decade"] == "1990s" and raw.items.loc["1", "genres"].count("|") == 1
    data = prep(raw, 4.0, val_split=LEAVE_LAST)
    assert len(data.test.users) > 0


def test_ml100k_bad_separator_names_file_and_line(tmp_path):
    d = write_ml100k(tmp_path / "ml")
    lines = (d / "ua.base").read_text().splitlines()
    lines[4] = lines[4].replace("\t", ",")
    (d / "ua.base").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"ua.base: line 5: expected 4 fields separated by '\\t', found 1"):
        MovieLensSource(str(d), "ua", True, True).load()


def test_ml100k_rating_errors_name_the_line(tmp_path):
    d = write_ml100k(tmp_path / "ml")
    lines = (d / "ua.test").read_text().splitlines()
    parts = lines[2].split("\t")
    (d / "ua.test").write_text("\n".join(lines[:2] + ["\t".join(parts[:2] + ["7"] + parts[3:])] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"ua.test, column 'rating': line 3: rating 7 outside the scale"):
        MovieLensSource(str(d), "ua", True, True).load()
    parts[2] = "good"
    (d / "ua.test").write_text("\n".join(lines[:2] + ["\t".join(parts)] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"line 3: a rating must be a finite number within .*, got 'good'"):
        MovieLensSource(str(d), "ua", True, True).load()


def test_ml1m_and_latest_formats(tmp_path):
    m1 = tmp_path / "ml-1m"
    m1.mkdir()
    (m1 / "ratings.dat").write_text("1::10::5::978300760\n1::11::3::978302109\n2::10::4::978301968\n")
    (m1 / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    (m1 / "movies.dat").write_text("10::Toy Story (1995)::Animation|Children's|Comedy\n11::Jumanji (1995)::Adventure\n")
    raw = MovieLensSource(str(m1), None, True, True).load()
    assert len(raw.log) == 3 and raw.items.loc["10", "genres"] == "Animation|Children's|Comedy"
    assert raw.users.loc["2", "gender"] == "M"
    latest = tmp_path / "ml-latest"
    latest.mkdir()
    (latest / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.5,964982703\n1,3,4.0,964981247\n")
    (latest / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation\n'
                                       "3,Heat (1995),(no genres listed)\n")
    raw = MovieLensSource(str(latest), None, True, True).load()
    assert sorted(raw.log.grade.tolist()) == [4.0, 4.5]
    assert raw.items.loc["1", "decade"] == "1990s" and raw.items.loc["3", "genres"] == ""
    (latest / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.5\n")
    with pytest.raises(DataError, match=r"ratings.csv: line 2: expected 4 fields"):
        MovieLensSource(str(latest), None, True, True).load()


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="MovieLens folder not found"):
        MovieLensSource(str(tmp_path / "nope"), "ua", True, True).load()


def _write_files(d: Path):
    d.mkdir(exist_ok=True)
    train = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "z", "y"],
                          "rating": [5, 2, 4, 5, 4], "timestamp": [1, 2, 3, 4, 5]})
    test = pd.DataFrame({"user_id": ["a", "b", "d"], "item_id": ["z", "y", "w"], "rating": [5, 4, 5]})
    items = pd.DataFrame({"item_id": ["x", "y", "z", "w"], "genres": ["g1|g2", "g2", "g3", "g1"],
                          "brand": ["n", "m", "n", "m"]})
    users = pd.DataFrame({"user_id": ["a", "b", "c", "d"], "country": ["DE", "FR", "DE", "FR"]})
    train.to_csv(d / "train.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    items.to_csv(d / "items.csv", index=False)
    users.to_parquet(d / "users.parquet") if _has_parquet() else users.to_csv(d / "users.csv", index=False)
    return d, ("users.parquet" if _has_parquet() else "users.csv")


def _has_parquet():
    try:
        import pyarrow  # noqa: F401
        return True
    except ImportError:
        return False


def test_files_source_with_multi_valued_item_features_and_cold_users(tmp_path):
    d, users = _write_files(tmp_path)
    src = FileSource(str(d / "train.csv"), str(d / "test.csv"), str(d / "items.csv"), str(d / users),
                     ["genres", "brand"], ["country"], rating_scale=[1, 5])
    raw = src.load()
    assert {s.name: s.kind for s in raw.item_specs} == {"genres": "multi", "brand": "categorical"}
    data = prep(raw, 4.0)
    assert "d" in list(data.user_ids)  # the cold test user is kept, scored from its country
    assert "w" in list(data.item_ids)  # the cold test item is in the catalogue
    assert len(data.test.users) == 3


def test_files_source_errors(tmp_path):
    d, _ = _write_files(tmp_path)
    with pytest.raises(DataError, match=r"feature column 'colour' not found"):
        FileSource(str(d / "train.csv"), str(d / "test.csv"), str(d / "items.csv"), None, ["colour"]).load()
    pd.DataFrame({"user_id": ["a"], "item_id": ["x"]}).to_csv(d / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv: needs a 'rating' or an 'event' column"):
        FileSource(str(d / "bad.csv"), str(d / "test.csv")).load()
    with pytest.raises(DataError, match=r"train.csv, column 'event', row 1: rating 2 outside the scale \[3, 5\]"):
        FileSource(str(d / "train.csv"), str(d / "test.csv"), rating_scale=[3, 5]).load()


@pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason=f"MovieLens-100k not found at {ML100K}")
def test_real_ml100k_matches_the_shared_protocol_counts():
    raw = MovieLensSource(str(ML100K), "ua", True, True).load()
    data = prep(raw, 4.0)
    assert data.n_items == 1682 and data.n_users == 943
    assert len(data.test.users) == 934  # users with a test positive, as in ../shared/bench
