"""The tokenizer's rules, and the same answers from Python and from TorchScript."""
import pytest
import torch

from rankers.model.tokenizer import OOV, FeatureSpec, Tokenizer, Vocabulary

SPECS = [FeatureSpec("country"), FeatureSpec("tags", "multi"), FeatureSpec("age", "numeric", buckets=3)]


def vocabulary():
    vocab = {"user_id": {OOV: 1, "u1": 2}, "country": {OOV: 3, "DE": 4, "FR": 5}, "tags": {OOV: 6, "a": 7, "b": 8},
             "age": {OOV: 9, "b0": 10, "b1": 11, "b2": 12}}
    return Vocabulary("user_id", SPECS, vocab, {"age": [20.0, 40.0]}, {"age": [18.0, 70.0]}, 13)


@pytest.fixture(scope="module", params=["python", "torchscript"])
def tok(request):
    t = Tokenizer(vocabulary())
    return t if request.param == "python" else torch.jit.script(t)


@pytest.mark.parametrize("field, raws, tokens", [
    ("country", ["DE"], [4]),
    ("country", ["IT"], [3]),                     # unknown value: the field's OOV token
    ("country", [""], []),                        # empty: no value, no token
    ("country", ["DE", "FR"], [4, 5]),
    ("tags", ["a|b"], [7, 8]),
    ("tags", ["a||x|"], [7, 6]),                  # empty parts dropped, unknown -> OOV
    ("tags", [""], []),
    ("age", ["20"], [11]),                        # bucket j = boundaries <= x
    ("age", ["19.99", "-5", "1e3", "+40.0"], [10, 10, 12, 12]),
])
def test_field_tokens(tok, field, raws, tokens):
    assert tok.field_tokens(field, raws) == tokens
    toks, weights = tok.field_bag(field, raws)
    assert toks == tokens and weights == pytest.approx([1.0 / len(tokens)] * len(tokens) if tokens else [])


@pytest.mark.parametrize("raw, why", [("x", "which is not a number"), ("nan", "which is not a number"),
                                      ("inf", "which is not a number"), (" 1", "which is not a number"),
                                      ("1e", "which is not a number"), ("", "which is not a number"),
                                      ("1e999", "which is out of range"), ("1e-400", "which is out of range")])
def test_a_bad_number_names_the_feature_and_the_value(tok, raw, why):
    with pytest.raises(Exception, match=f"numeric feature 'age' got '{raw}', {why}"):
        tok.field_tokens("age", [raw])


def test_unknown_field_is_named(tok):
    with pytest.raises(Exception, match="unknown feature 'shoe'; known: country, tags, age"):
        tok.field_tokens("shoe", ["x"])


def test_token_fields_and_state_round_trip():
    t = Tokenizer(vocabulary())
    assert t.token_field.tolist() == [-1, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    again = Vocabulary.from_state(vocabulary().state())
    assert again == vocabulary()
    d = vocabulary().describe()
    assert d["age"] == {"kind": "numeric", "range": [18.0, 70.0], "boundaries": [20.0, 40.0]}
    assert d["tags"] == {"kind": "multi", "values": ["a", "b"], "sep": "|"}


def test_lookup_many_is_lookup_over_an_array():
    t = Tokenizer(vocabulary())
    values = ["DE", "FR", "", "nowhere", "<oov>", "DE", "de"]
    assert t.lookup_many("country", values).tolist() == [t.lookup("country", v) for v in values]
    assert t.lookup_many("user_id", []).tolist() == []
