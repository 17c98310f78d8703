"""The synthetic world at any size: its large-catalogue sampler, its Parquet dataset, its cache."""
import json
import os

import numpy as np
import pytest

import rankers.data.synthetic as syn
from tests.conftest import synthetic_source


def view_stats(world, n_users):
    """Per category share of views, and the mean affinity of what users viewed."""
    cats, aff = [], []
    for index in range((n_users + syn.CHUNK - 1) // syn.CHUNK):
        rng = np.random.default_rng((7, index))
        users = world.users(rng, min(syn.CHUNK, n_users - index * syn.CHUNK))
        n_views = np.clip(rng.poisson(world.mean_views, len(users["age"])), 3, world.n_items)
        rows, items = world._views(users, n_views, rng)
        assert len(np.unique(rows.astype(np.int64) * world.n_items + items)) == len(rows)  # no item twice per user
        cats.append(world.category[items])
        aff.append(world.affinity(users, rows, items))
    share = np.bincount(np.concatenate(cats), minlength=world.category.max() + 1) / sum(map(len, cats))
    return share, float(np.concatenate(aff).mean())


def test_the_large_catalogue_sampler_draws_like_the_exact_one(monkeypatch):
    # Sampling-importance-resampling from the (category, brand) proposal against the exact
    # Gumbel top-k over every item: the same tastes come out.
    world = syn.World(3000, 5000, 20.0, seed=1)
    assert world.n_items > syn.FULL_SCAN
    sir_share, sir_aff = view_stats(world, 3000)
    monkeypatch.setattr(syn, "FULL_SCAN", 10_000)
    exact_share, exact_aff = view_stats(world, 3000)
    assert np.abs(sir_share - exact_share).max() < 0.02
    assert abs(sir_aff - exact_aff) < 0.05 * abs(exact_aff)
    rng = np.random.default_rng(0)
    users = world.users(rng, 500)
    random_aff = world.affinity(users, np.arange(500)[:, None], rng.integers(0, 5000, (500, 20))).mean()
    assert exact_aff > random_aff + 1.0  # views follow taste, not chance


def test_the_dataset_is_written_once_and_equals_the_world_in_memory(tmp_path):
    config = dict(n_users=300, n_items=120, mean_views=10.0, seed=3)
    d = syn.write_dataset(tmp_path, **config)
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["config"] == config and manifest["events"] > 0
    assert len(list((d / "events").glob("*.parquet"))) == 1 and (d / "items.parquet").is_file()
    stamp = (d / "manifest.json").stat().st_mtime_ns
    assert syn.write_dataset(tmp_path, **config) == d and (d / "manifest.json").stat().st_mtime_ns == stamp  # reused
    from_disk = synthetic_source(300, 120, seed=3, mean_views=10.0).__class__(
        **config, use_user_features=True, use_item_features=True, cache_dir=str(tmp_path), cache_min_events=0).load()
    in_memory = synthetic_source(300, 120, seed=3, mean_views=10.0).load()
    for name in ("grade", "timestamp", "weight"):
        np.testing.assert_array_equal(getattr(from_disk.log, name), getattr(in_memory.log, name), name)
    for ids, codes in (("user_ids", "user"), ("item_ids", "item")):  # the dictionaries hold what occurs
        np.testing.assert_array_equal(getattr(from_disk.log, ids)[getattr(from_disk.log, codes)],
                                      getattr(in_memory.log, ids)[getattr(in_memory.log, codes)])
    assert from_disk.users.equals(in_memory.users.loc[from_disk.users.index])
    assert from_disk.items.equals(in_memory.items)


def test_an_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    real = syn.World.chunk

    def dies_after_the_first(self, index):
        if index > 0:
            raise KeyboardInterrupt
        return real(self, index)
    monkeypatch.setattr(syn.World, "chunk", dies_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        syn.write_dataset(tmp_path, n_users=syn.CHUNK + 10, n_items=50, mean_views=5.0, seed=0)
    assert os.listdir(tmp_path) == []  # no dataset a later run could reuse, no temporary directory


def test_bad_world_sizes_are_named():
    with pytest.raises(ValueError, match="synthetic: need n_users, n_items >= 1 and mean_views > 0"):
        syn.World(0, 10, 5.0, 0)
