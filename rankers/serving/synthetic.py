"""Random-weight exports of any size, for serving tests and benchmarks (no training).

``random_export`` builds the export bundle straight from arrays (the data pipeline would
encode 100k items row by row), a TwoTower with its random initial weights, and writes a
normal export directory through ``rankers.export.export``. Ids are ``u0..`` and ``i0..``;
users have a ``country``, a ``segment`` and an ``age`` (numeric), items a ``category``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd
import torch

from rankers.data.features import EntityEncoder, FeatureSpec

COUNTRIES = ["DE", "FR", "IT", "ES", "NL"]
SEGMENTS = ["budget", "mainstream", "premium"]


def random_bundle(n_items: int, n_users: int, n_categories: int = 20, history_len: int = 10,
                  seed: int = 0) -> dict:
    """An export bundle (see ``rankers.export.bundle_from_data``) with random users and items."""
    if n_items < 1 or n_users < 1:
        raise ValueError(f"need n_items >= 1 and n_users >= 1, got {n_items}, {n_users}")
    rng = np.random.default_rng(seed)
    item_ids = [f"i{i}" for i in range(n_items)]
    user_ids = [f"u{u}" for u in range(n_users)]
    cats = np.array([f"c{c}" for c in range(n_categories)])[rng.integers(0, n_categories, n_items)]
    country = np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), n_users)]
    segment = np.array(SEGMENTS)[rng.integers(0, len(SEGMENTS), n_users)]
    items = pd.DataFrame({"category": cats}, index=pd.Index(item_ids, name="item_id"))
    age = rng.integers(18, 80, n_users).astype(np.float64)
    users = pd.DataFrame({"country": country, "segment": segment, "age": age},
                         index=pd.Index(user_ids, name="user_id"))
    ie = EntityEncoder.fit("item_id", item_ids, items, [FeatureSpec("category")])
    ue = EntityEncoder.fit("user_id", user_ids, users,
                           [FeatureSpec("country"), FeatureSpec("segment"), FeatureSpec("age", "numeric", buckets=4)])

    def bag(enc: EntityEncoder, ids, table: pd.DataFrame) -> np.ndarray:
        cols = [[enc.vocab[enc.id_field][i] for i in ids]]
        for spec in enc.specs:  # one token per field: categorical or numeric here
            cols.append([enc.field_tokens(spec, v)[0] for v in table[spec.name]])
        return np.stack(cols, axis=1).astype(np.int64)

    item_tokens = bag(ie, item_ids, items)
    user_tokens = bag(ue, user_ids, users)
    h = min(history_len, n_items)
    history = np.stack([rng.choice(n_items, h, replace=False) + 1 for _ in range(n_users)]).astype(np.int64)
    return {"item_ids": item_ids, "user_ids": user_ids,
            "user_tokens": user_tokens, "user_weights": np.ones(user_tokens.shape, np.float32),
            "history": history, "item_tokens": item_tokens,
            "item_weights": np.ones(item_tokens.shape, np.float32),
            "user_encoder": ue.state(), "item_encoder": ie.state()}


def random_net(bundle: dict, dim: int = 64, seed: int = 0, **hparams):
    """A TwoTower sized for ``bundle`` with random weights (biases and MLP outputs too, which
    start at zero in training, so every part of the graph matters). ``hparams``: TwoTower's."""
    from rankers.models.two_tower import TwoTower

    torch.manual_seed(seed)
    net = TwoTower(n_user_tokens=bundle["user_encoder"]["n_tokens"],
                   n_item_tokens=bundle["item_encoder"]["n_tokens"], n_items=len(bundle["item_ids"]), dim=dim,
                   **hparams)
    with torch.no_grad():
        w = net.item_tower.bias.embedding.weight
        w.normal_(0.0, 0.1)
        w[0].zero_()
        for mod in net.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.normal_(0.0, 0.1)
        if net.repeat is not None:
            net.repeat.fill_(-0.3)  # enough to reorder: random scores spread about +-1
    return net.eval()


def random_export(out_dir: Union[str, Path], n_items: int = 1000, n_users: int = 200, dim: int = 64,
                  seed: int = 0, net_hparams: Union[dict, None] = None, **export_kwargs) -> Path:
    """Write a random-weight export to ``out_dir`` (atomically); returns out_dir.
    ``net_hparams``: extra TwoTower arguments (user_mlp, item_mlp, ...); ``export_kwargs``: export's."""
    from rankers.export import export

    bundle = random_bundle(n_items, n_users, seed=seed)
    net = random_net(bundle, dim=dim, seed=seed, **(net_hparams or {}))
    return export(net, bundle, out_dir, config={"synthetic": {"n_items": n_items, "n_users": n_users,
                                                              "dim": dim, "seed": seed}},
                  metrics={}, **export_kwargs)
