"""Random-weight exports of any size, for tests and benchmarks (no training).

``random_bundle`` builds an ExportBundle straight from arrays, ``random_net`` a TwoTower with
random weights, and ``random_export`` writes a normal export directory through
``rankers.artifact.writer.export``. Ids are ``u0..`` and ``i0..``; users have a ``country``,
a ``segment`` and an ``age`` (numeric), items a ``category``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd
import torch

from rankers.artifact.schema import ExportBundle
from rankers.data.ragged import Ragged, unique
from rankers.data.features import FeatureSpec, encode_entities, fit_vocabulary
from rankers.model import Tokenizer, TwoTower

COUNTRIES = ["DE", "FR", "IT", "ES", "NL"]
SEGMENTS = ["budget", "mainstream", "premium"]
# The architecture of a random model unless a test says otherwise (not the training defaults,
# which live in rankers/conf/model/).
RANDOM_NET = dict(use_history=True, user_mlp=[], item_mlp=[], use_bias=True, dropout=0.0, history_alpha=1.0,
                  sparse=False, score={"repeat": False, "popularity_prior": False})


def random_bundle(n_items: int, n_users: int, n_categories: int = 20, history_len: int = 10,
                  seed: int = 0) -> ExportBundle:
    """An export bundle with random users and items."""
    if n_items < 1 or n_users < 1:
        raise ValueError(f"need n_items >= 1 and n_users >= 1, got {n_items}, {n_users}")
    rng = np.random.default_rng(seed)
    item_ids = [f"i{i}" for i in range(n_items)]
    user_ids = [f"u{u}" for u in range(n_users)]
    cats = np.array([f"c{c}" for c in range(n_categories)])[rng.integers(0, n_categories, n_items)]
    items = pd.DataFrame({"category": cats}, index=pd.Index(item_ids, name="item_id"))
    users = pd.DataFrame({"country": np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), n_users)],
                          "segment": np.array(SEGMENTS)[rng.integers(0, len(SEGMENTS), n_users)],
                          "age": rng.integers(18, 80, n_users).astype(np.float64)},
                         index=pd.Index(user_ids, name="user_id"))
    iv = fit_vocabulary("item_id", item_ids, items, [FeatureSpec("category")])
    uv = fit_vocabulary("user_id", user_ids, users,
                        [FeatureSpec("country"), FeatureSpec("segment"), FeatureSpec("age", "numeric", buckets=4)])
    item_tokens, item_weights = encode_entities(Tokenizer(iv), item_ids, items)
    user_tokens, user_weights = encode_entities(Tokenizer(uv), user_ids, users)
    # up to history_len distinct items per user (draws with replacement, repeats dropped)
    key = unique(np.repeat(np.arange(n_users, dtype=np.int64), history_len) * n_items
                    + rng.integers(0, n_items, n_users * history_len))
    history = Ragged.group(key // n_items, (key % n_items + 1).astype(np.int32), n_users)
    return ExportBundle(item_ids, user_ids, user_tokens, user_weights, history, item_tokens, item_weights, uv, iv)


def random_net(bundle: ExportBundle, dim: int = 64, seed: int = 0, **hparams) -> TwoTower:
    """A TwoTower sized for ``bundle`` with random weights (biases, MLP outputs and the repeat
    term too, which start at zero in training, so every part of the graph matters).
    ``hparams`` override ``RANDOM_NET`` (TwoTower's arguments; ``score`` merges)."""
    torch.manual_seed(seed)
    arch = {**RANDOM_NET, **hparams, "score": {**RANDOM_NET["score"], **hparams.get("score", {})}}
    net = TwoTower(bundle.user_vocab.n_tokens, bundle.item_vocab.n_tokens, len(bundle.item_ids), dim=dim, **arch)
    with torch.no_grad():
        w = net.item_tower.bias.embedding.weight
        w.normal_(0.0, 0.1)
        w[0].zero_()
        for mod in net.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.normal_(0.0, 0.1)
        if net.scorer.use_repeat:
            net.scorer.repeat.fill_(-0.3)  # enough to reorder: random scores spread about +-1
    return net.eval()


def random_export(out_dir: Union[str, Path], n_items: int = 1000, n_users: int = 200, dim: int = 64,
                  seed: int = 0, net_hparams: Union[dict, None] = None, **export_kwargs) -> Path:
    """Write a random-weight export to ``out_dir`` (atomically); returns out_dir.
    ``net_hparams``: TwoTower arguments over RANDOM_NET; ``export_kwargs``: export's."""
    from rankers.artifact.writer import export

    bundle = random_bundle(n_items, n_users, seed=seed)
    net = random_net(bundle, dim=dim, seed=seed, **(net_hparams or {}))
    return export(net, bundle, out_dir, config={"synthetic": {"n_items": n_items, "n_users": n_users,
                                                              "dim": dim, "seed": seed}},
                  metrics={}, **export_kwargs)
