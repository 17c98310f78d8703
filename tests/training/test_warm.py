"""Warm starts (init_from=) and retraining windows (data.since / data.until): vocabularies grow
with known tokens kept, the warm model starts as the previous one scored, and bad requests are
refused before training."""
import numpy as np
import pandas as pd
import pytest
import torch

from rankers.artifact.writer import load_checkpoint
from rankers.data.dataset import time_bound
from rankers.data.errors import DataError
from rankers.data.features import fit_vocabulary
from rankers.model import OOV, FeatureSpec
from rankers.training.train import build, train
from rankers.training.warm import load_previous, token_rows
from tests.conftest import make_cfg

T0 = 1_700_000_000


def write_shop(root, n_users=80, n_items=40, new_users=0, new_items=0, events=1500, seed=0):
    """A small shop as data=files CSVs: events.csv (user_id, item_id, event, timestamp) and
    items.csv (category, price); users u0.. and items i0..; the last ``new_users`` users and
    ``new_items`` items have events only in the last tenth of the time."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, events)
    i = rng.integers(0, n_items, events)
    ts = T0 + rng.uniform(0, 1e6, events)
    late = (u >= n_users - new_users) | (i >= n_items - new_items)
    ts[late] = T0 + rng.uniform(0.9e6, 1e6, late.sum())
    kind = np.array(["view", "cart", "purchase"])[np.minimum(i % 3 + (u % 2), 2)]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i], "event": kind,
                  "timestamp": ts}).to_csv(root / "events.csv", index=False)
    pd.DataFrame({"item_id": [f"i{x}" for x in range(n_items)], "category": [f"c{x % 5}" for x in range(n_items)],
                  "price": np.arange(n_items, dtype=float)}).to_csv(root / "items.csv", index=False)
    return root


def files_cfg(tmp_path, shop, *overrides):
    return make_cfg(tmp_path, ["data=files", f"data.train={shop / 'events.csv'}", "data.test=null",
                               f"data.items={shop / 'items.csv'}",
                               "data.item_features=[category,{name:price,kind:numeric,buckets:4}]",
                               "data.val_split=null", "trainer.max_epochs=2", "baseline=false", *overrides])


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    """A model trained on the first 90% of the time (without the late users and items)."""
    root = tmp_path_factory.mktemp("warm")
    shop = write_shop(root / "shop", new_users=6, new_items=4)
    train(files_cfg(root / "prev", shop, f"data.until={T0 + 0.9e6}", "callbacks=default"))
    return shop, root / "prev"


def test_a_grown_vocabulary_keeps_every_token_and_numbers_new_values_after_the_last():
    table = pd.DataFrame({"cat": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]}, index=pd.Index(["i1", "i2", "i3"]))
    specs = [FeatureSpec("cat"), FeatureSpec("x", "numeric", buckets=2)]
    old = fit_vocabulary("item_id", ["i1", "i2"], table, specs)
    grown = fit_vocabulary("item_id", ["i2", "i3"], table, specs, base=old)
    for f, d in old.vocab.items():
        assert {v: grown.vocab[f][v] for v in d} == d  # known values keep their tokens
    assert grown.vocab["item_id"]["i3"] == old.n_tokens and grown.vocab["cat"]["c"] == old.n_tokens + 1
    assert grown.n_tokens == old.n_tokens + 2
    assert grown.boundaries == old.boundaries  # a bucket token keeps its meaning
    # a new token starts from its field's OOV row
    rows = token_rows(grown, old)
    assert rows[grown.vocab["cat"]["c"]] == old.vocab["cat"][OOV]
    assert rows[grown.vocab["item_id"]["i3"]] == old.vocab["item_id"][OOV]
    assert (rows[:old.n_tokens] == np.arange(old.n_tokens)).all()
    with pytest.raises(ValueError, match="keeps the feature fields"):
        fit_vocabulary("item_id", ["i2"], table, [FeatureSpec("cat")], base=old)


def test_the_warm_model_starts_as_the_previous_model_scored(previous, tmp_path):
    shop, prev_dir = previous
    prev_net, prev_bundle = load_checkpoint(prev_dir / "export" / "checkpoint.pt")
    dm, module = build(files_cfg(tmp_path, shop, f"init_from={prev_dir / 'export'}"))
    data, net = dm.data, module.net.eval()
    # the items table is the catalogue in both; the late users and items got new id tokens
    assert data.n_items == len(prev_bundle.item_ids) == 40
    assert data.user_vocab.n_tokens == prev_bundle.user_vocab.n_tokens + 6
    assert data.item_vocab.n_tokens == prev_bundle.item_vocab.n_tokens + 4
    # every item, known or new, scores as the previous model scored its bag (a new one from
    # its features with the OOV id): the previous model's tokenizer on the same items
    from rankers.data.features import encode_entities
    from rankers.model.tokenizer import Tokenizer
    ids = np.asarray(data.item_ids, dtype=object)
    old_tok, old_w = encode_entities(Tokenizer(prev_bundle.item_vocab), ids, dm.source.load().items)
    with torch.no_grad():
        v_new, b_new = net.item_tower(torch.from_numpy(data.item_tokens), torch.from_numpy(data.item_weights))
        v_old, b_old = prev_net.item_tower(torch.from_numpy(old_tok), torch.from_numpy(old_w))
    torch.testing.assert_close(v_new, v_old)
    torch.testing.assert_close(b_new, b_old)
    new_items = ~np.isin(ids.astype(str), list(prev_bundle.item_vocab.vocab["item_id"]))
    assert new_items.sum() == 4


def test_a_warm_run_trains_and_exports_from_an_export_or_a_run_directory(previous, tmp_path):
    shop, prev_dir = previous
    for name, src, opt in (("export", prev_dir / "export", "fresh"), ("run", prev_dir, "carry")):
        m = train(files_cfg(tmp_path / name, shop, f"init_from={src}", f"init_optimizer={opt}",
                            "trainer.max_epochs=1"))
        assert np.isfinite(m["test/ndcg@10"]) and m["data_last_timestamp"] > T0 + 0.9e6
        assert (tmp_path / name / "export" / "checkpoint.pt").is_file()
    # carried Adam state: known rows keep theirs, new rows start at zero
    prev = load_previous(prev_dir)
    _, module = build(files_cfg(tmp_path / "c", shop, f"init_from={prev_dir}", "init_optimizer=carry"))
    names = [n for n, _ in module.net.named_parameters()]
    i = names.index("user_tower.features.embedding.weight")
    carried, old = module.initial_optimizer_state[i]["exp_avg"], prev.optimizer["state"][i]["exp_avg"]
    n_old = len(old)
    assert len(carried) == n_old + 6 and old.abs().sum() > 0
    torch.testing.assert_close(carried[:n_old], old)
    assert carried[n_old:].abs().sum() == 0
    opt = module.configure_optimizers()
    assert opt.state[list(module.net.parameters())[i]]["exp_avg"] is carried


@pytest.mark.parametrize("overrides, error, match", [
    (["init_optimizer=carry"], ValueError, "holds no optimiser state"),
    (["model.dim=16"], ValueError, "model.dim=16 .*keeps the model's shape"),
    (["init_optimizer=sometimes"], ValueError, "init_optimizer must be one of"),
    (["resume=somewhere"], ValueError, "give one of them"),
])
def test_a_warm_start_that_cannot_work_is_refused_before_training(previous, tmp_path, overrides, error, match):
    shop, prev_dir = previous
    with pytest.raises(error, match=match):
        train(files_cfg(tmp_path, shop, f"init_from={prev_dir / 'export'}", *overrides))
    assert not (tmp_path / "metrics.json").exists()


def test_init_from_a_missing_or_foreign_path_names_it(tmp_path):
    shop = write_shop(tmp_path / "shop")
    (tmp_path / "empty").mkdir()
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    for target, match in (("nowhere", "no such export directory"), ("empty", "checkpoint.pt"),
                          ("foreign.pt", "not a rankers checkpoint")):
        with pytest.raises((FileNotFoundError, ValueError), match=match):
            train(files_cfg(tmp_path / "run", shop, f"init_from={tmp_path / target}"))


def test_the_window_reads_only_events_since_and_until(tmp_path):
    shop = write_shop(tmp_path / "shop")
    m = train(files_cfg(tmp_path / "w", shop, f"data.since={T0 + 2e5}", f"data.until={T0 + 8e5}",
                        "trainer.max_epochs=1", "export=false"))
    assert T0 + 2e5 <= m["data_first_timestamp"] and m["data_last_timestamp"] < T0 + 8e5
    with pytest.raises(DataError, match="no event in the window"):
        train(files_cfg(tmp_path / "e", shop, f"data.since={T0 + 2e6}", "export=false"))
    with pytest.raises(ValueError, match="must be before data.until"):
        train(files_cfg(tmp_path / "o", shop, f"data.since={T0 + 5e5}", f"data.until={T0 + 1e5}"))


def test_window_bounds_read_numbers_and_iso_dates():
    assert time_bound(None, "data.since") is None
    assert time_bound(1.5, "data.since") == 1.5 and time_bound("1700000000", "data.since") == 1.7e9
    assert time_bound("2023-11-14T22:13:20Z", "data.since") == 1.7e9
    assert time_bound("2023-11-14T22:13:20", "data.since") == 1.7e9  # no zone: UTC
    with pytest.raises(ValueError, match="data.until must be a number .* got 'yesterday'"):
        time_bound("yesterday", "data.until")


def test_histories_merge_newest_first_without_repeats_and_cut():
    from rankers.data.dataset import merge_histories
    from rankers.data.ragged import Ragged

    new = Ragged(np.array([0, 2, 2, 3]), np.array([5, 6, 7], np.int32))  # rows: [5, 6], [], [7]
    # old catalogue: item k is new item 10 + k; old rows belong to new rows 0, 2, none
    old = Ragged(np.array([0, 3, 4, 5]), np.array([1, 2, 3, 4, 5], np.int32))
    item_map = np.array([4, 11, 12, 13, 14])  # old item 0 is new item 4 (index + 1 = 5: a repeat)
    m = merge_histories(new, old, np.array([0, 2, -1]), item_map, max_len=3)
    assert [list(m.row(r)) for r in range(3)] == [[5, 6, 12], [], [7, 14]]


def test_a_window_keeps_the_previous_models_users_and_their_histories(previous, tmp_path):
    shop, prev_dir = previous
    _, prev_bundle = load_checkpoint(prev_dir / "export" / "checkpoint.pt")
    dm, _ = build(files_cfg(tmp_path, shop, f"init_from={prev_dir / 'export'}", f"data.since={T0 + 0.95e6}"))
    data = dm.data
    known = np.asarray(data.user_ids[:data.n_train_users], str)
    assert set(prev_bundle.user_ids) <= set(known)  # nobody the previous model knew became unknown
    in_window = set(np.asarray(data.train.user, np.int64).tolist())
    quiet = [r for r, u in enumerate(known) if r not in in_window and u in prev_bundle.user_ids]
    assert quiet
    r = quiet[0]
    old = prev_bundle.history.row(prev_bundle.user_ids.index(known[r]))
    old_ids = [prev_bundle.item_ids[i - 1] for i in old]
    assert [data.item_ids[i - 1] for i in data.history_full.row(r)] == old_ids
