import numpy as np
import pandas as pd
import pytest

from rankers.data.errors import DataError
from rankers.data.features import OOV, EntityEncoder, FeatureSpec, validate_table

SPECS = [FeatureSpec("brand"), FeatureSpec("tags", "multi"), FeatureSpec("price", "numeric", buckets=2)]


def table():
    df = pd.DataFrame({"item_id": ["a", "b", "c"], "brand": ["x", "y", "x"], "tags": ["s|t", "t", ""],
                       "price": ["1.0", "5.0", "9.0"]})
    return validate_table(df, "item_id", SPECS, "items.csv")


def test_encoding_is_sum_over_fields_of_mean_within_field():
    enc = EntityEncoder.fit("item_id", ["a", "b"], table(), SPECS)
    tokens, weights = enc.encode(["a"], table())
    bag = dict(zip(tokens[0].tolist(), weights[0].tolist()))
    v = enc.vocab
    assert bag[v["item_id"]["a"]] == 1.0 and bag[v["brand"]["x"]] == 1.0
    assert bag[v["tags"]["s"]] == pytest.approx(0.5) and bag[v["tags"]["t"]] == pytest.approx(0.5)
    assert sum(1 for t in tokens[0] if t == 0) == tokens.shape[1] - 5  # id, brand, 2 tags, price bucket


def test_unseen_ids_and_values_map_to_oov():
    enc = EntityEncoder.fit("item_id", ["a", "b"], table(), SPECS)
    tokens, _ = enc.encode(["c", "zzz"], table())
    assert tokens[0, 0] == enc.vocab["item_id"][OOV]
    assert tokens[1, 0] == enc.vocab["item_id"][OOV] and (tokens[1, 1:] == 0).all()  # no features at all
    assert enc.vocab["item_id"][OOV] == 1  # the id field's OOV is token 1 (the data pipeline relies on it)


def test_numeric_buckets_come_from_training_rows():
    enc = EntityEncoder.fit("item_id", ["a", "b"], table(), SPECS)
    assert enc.boundaries["price"] == [3.0]
    assert enc.field_tokens(SPECS[2], 100.0) == [enc.vocab["price"]["b1"]]
    assert enc.field_tokens(SPECS[2], -1.0) == [enc.vocab["price"]["b0"]]


def test_bad_tables_are_named():
    df = pd.DataFrame({"item_id": ["a", "a"], "brand": ["x", "y"], "tags": ["", ""], "price": [1, 2]})
    with pytest.raises(DataError, match=r"items.csv, column 'item_id', row 1: duplicate item_id 'a'"):
        validate_table(df, "item_id", SPECS, "items.csv")
    df = pd.DataFrame({"item_id": ["a", "b"], "brand": ["x", "y"], "tags": ["", ""], "price": ["1", "nan"]})
    with pytest.raises(DataError, match=r"column 'price', row 1: numeric feature is not a finite number"):
        validate_table(df, "item_id", SPECS, "items.csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['brand'\]"):
        validate_table(df.drop(columns=["brand"]), "item_id", SPECS, "items.csv")


def test_state_round_trip():
    enc = EntityEncoder.fit("item_id", ["a", "b"], table(), SPECS)
    enc2 = EntityEncoder.from_state(enc.state())
    np.testing.assert_array_equal(enc.encode(["a", "c"], table())[0], enc2.encode(["a", "c"], table())[0])
