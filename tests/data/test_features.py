"""Feature tables, vocabulary fitting and the vectorised table encoder (which must give every
entity exactly the bag the tokenizer gives it one by one)."""
import numpy as np
import pandas as pd
import pytest

from rankers.data.errors import DataError
from rankers.data.features import FeatureSpec, encode_entities, fit_vocabulary, validate_table
from rankers.model.tokenizer import OOV, Tokenizer

SPECS = [FeatureSpec("brand"), FeatureSpec("tags", "multi"), FeatureSpec("price", "numeric", buckets=2)]


def table():
    df = pd.DataFrame({"item_id": ["a", "b", "c"], "brand": ["x", "y", "x"], "tags": ["s|t", "t", ""],
                       "price": ["1.0", "5.0", "9.0"]})
    return validate_table(df, "item_id", SPECS, "items.csv")


def bag_of(tok, entity_id, row):
    """One entity's bag the slow way: the tokenizer field by field (the order model.ts uses)."""
    toks, weights = [tok.lookup(tok.id_field, entity_id)], [1.0]
    if row is not None:
        for spec in SPECS:
            raw = row[spec.name]
            t, w = tok.field_bag(spec.name, [repr(float(raw)) if spec.kind == "numeric" else str(raw)])
            toks += t
            weights += w
    return toks, weights


def test_encoding_is_sum_over_fields_of_mean_within_field():
    v = fit_vocabulary("item_id", ["a", "b"], table(), SPECS)
    tokens, weights = encode_entities(Tokenizer(v), ["a"], table())
    bag = dict(zip(tokens[0].tolist(), weights[0].tolist()))
    assert bag[v.vocab["item_id"]["a"]] == 1.0 and bag[v.vocab["brand"]["x"]] == 1.0
    assert bag[v.vocab["tags"]["s"]] == pytest.approx(0.5) and bag[v.vocab["tags"]["t"]] == pytest.approx(0.5)
    assert tokens.shape[1] == 5  # id, brand, 2 tags, price bucket


def test_unseen_ids_and_values_map_to_oov_and_empty_values_to_nothing():
    v = fit_vocabulary("item_id", ["a", "b"], table(), SPECS)
    tokens, _ = encode_entities(Tokenizer(v), ["c", "zzz"], table())
    assert tokens[0, 0] == v.vocab["item_id"][OOV]
    assert v.vocab["tags"][OOV] not in tokens[0]  # c's tags are empty: no token, not OOV
    assert tokens[1, 0] == v.vocab["item_id"][OOV] and (tokens[1, 1:] == 0).all()  # no row: no features


def test_numeric_buckets_and_ranges_come_from_training_rows():
    v = fit_vocabulary("item_id", ["a", "b"], table(), SPECS)
    assert v.boundaries["price"] == [3.0] and v.ranges["price"] == [1.0, 5.0]
    tok = Tokenizer(v)
    assert tok.field_tokens("price", ["100"]) == [v.vocab["price"]["b1"]]
    assert tok.field_tokens("price", ["-1"]) == [v.vocab["price"]["b0"]]


def test_the_vectorised_encoder_equals_the_tokenizer_entity_by_entity():
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"item_id": [f"i{j}" for j in range(n)],
                       "brand": rng.choice(["x", "y", "z", ""], n),
                       "tags": ["|".join(rng.choice(["s", "t", "u", ""], rng.integers(0, 4))) for _ in range(n)],
                       "price": rng.normal(10, 3, n).round(2)})
    t = validate_table(df, "item_id", SPECS, "items")
    v = fit_vocabulary("item_id", [f"i{j}" for j in range(0, n, 2)], t, SPECS)  # half the items are unseen
    tok = Tokenizer(v)
    ids = [f"i{j}" for j in range(n)] + ["never-seen"]
    tokens, weights = encode_entities(tok, ids, t)
    for r, e in enumerate(ids):
        want_t, want_w = bag_of(tok, e, t.loc[e] if e in t.index else None)
        k = len(want_t)
        assert tokens[r, :k].tolist() == want_t, e
        np.testing.assert_array_equal(weights[r, :k], np.asarray(want_w, np.float32))
        assert (tokens[r, k:] == 0).all() and (weights[r, k:] == 0).all()


def test_bad_tables_are_named():
    df = pd.DataFrame({"item_id": ["a", "a"], "brand": ["x", "y"], "tags": ["", ""], "price": [1, 2]})
    with pytest.raises(DataError, match=r"items.csv, column 'item_id', row 1: duplicate item_id 'a'"):
        validate_table(df, "item_id", SPECS, "items.csv")
    df = pd.DataFrame({"item_id": ["a", "b"], "brand": ["x", "y"], "tags": ["", ""], "price": ["1", "nan"]})
    with pytest.raises(DataError, match=r"column 'price', row 1: a numeric feature must be a finite number"):
        validate_table(df, "item_id", SPECS, "items.csv")
    df["price"] = ["1", "1e301"]
    with pytest.raises(DataError, match=r"column 'price', row 1: .*within \+-1e\+300, got '1e301'"):
        validate_table(df, "item_id", SPECS, "items.csv")
    df["price"] = ["1", "1e-310"]  # subnormal: model.ts could not parse it back
    with pytest.raises(DataError, match=r"column 'price', row 1: .* must be 0 or at least 1e-300 in magnitude"):
        validate_table(df, "item_id", SPECS, "items.csv")
    with pytest.raises(DataError, match=r"missing column\(s\) \['brand'\]"):
        validate_table(df.drop(columns=["brand"]), "item_id", SPECS, "items.csv")
