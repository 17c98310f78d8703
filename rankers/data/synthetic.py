"""A seeded synthetic e-commerce world: users, items, a hidden preference model, events.

Users have an age, gender, country and price segment; items a category, brand, price,
colour and a multi-valued set of style tags. A hidden model links the two: user and
item latent vectors are sums of per-feature effects plus individual noise, and a user's
affinity to an item adds item popularity and a segment-by-price term. Each user views
items drawn without replacement from softmax(affinity); views turn into carts and carts
into purchases with probabilities that rise with affinity. Events are timestamped in
order, so temporal splits make sense. Ids are ``u0..`` and ``i0..``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from rankers.data.features import FeatureSpec
from rankers.data.eventlog import EventLog
from rankers.data.log import DEFAULT_GRADES, validate_log
from rankers.data.source import RawData

COUNTRIES = ["DE", "FR", "IT", "ES", "NL", "PL", "AT", "CH", "SE", "DK"]
SEGMENTS = ["budget", "mainstream", "premium"]
GENDERS = ["f", "m", "x"]
COLOURS = ["black", "white", "grey", "navy", "red", "green", "beige", "blue", "pink", "brown"]
STYLES = ["casual", "formal", "sport", "outdoor", "vintage", "minimal", "street", "classic",
          "boho", "retro", "techwear", "preppy"]


def generate(n_users: int, n_items: int, mean_views: float, seed: int, n_categories: int = 12, n_brands: int = 40,
             latent_dim: int = 16, user_noise: float = 0.8, item_noise: float = 0.5, temperature: float = 1.0):
    """Generate (log, users, items) tables.

    Returns:
        log: DataFrame [n_events] with user_id, item_id, event (view|cart|purchase), timestamp.
        users: DataFrame [n_users] with user_id, age (numeric), gender, country, segment.
        items: DataFrame [n_items] with item_id, category, brand, price (numeric), colour,
            styles ('|'-separated).
    """
    rng = np.random.default_rng(seed)
    k = latent_dim

    def effects(n):
        return rng.normal(0.0, 1.0 / np.sqrt(k), size=(n, k))

    # Users: each feature value carries a latent effect; individuals deviate from their group.
    age = rng.integers(18, 71, n_users)
    age_band = np.minimum((age - 18) // 10, 5)
    gender = rng.integers(0, len(GENDERS), n_users)
    country = rng.choice(len(COUNTRIES), n_users, p=np.r_[0.3, 0.15, 0.12, 0.1, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03])
    segment = rng.choice(len(SEGMENTS), n_users, p=[0.35, 0.45, 0.2])
    u_lat = (effects(6)[age_band] + effects(len(GENDERS))[gender] + 0.6 * effects(len(COUNTRIES))[country]
             + effects(len(SEGMENTS))[segment] + user_noise * effects(n_users))

    # Items: brands sit in a price tier; styles are a multi-valued bag.
    category = rng.integers(0, n_categories, n_items)
    brand = rng.integers(0, n_brands, n_items)
    brand_tier = rng.normal(0.0, 0.6, n_brands)
    log_price = 3.5 + brand_tier[brand] + 0.3 * rng.normal(size=n_items) + 0.2 * (category % 3)
    colour = rng.integers(0, len(COLOURS), n_items)
    n_styles = rng.integers(1, 4, n_items)
    style_sets = [rng.choice(len(STYLES), m, replace=False) for m in n_styles]
    style_eff = effects(len(STYLES))
    i_lat = (1.2 * effects(n_categories)[category] + effects(n_brands)[brand] + 0.5 * effects(len(COLOURS))[colour]
             + np.stack([style_eff[s].mean(0) for s in style_sets]) + item_noise * effects(n_items))
    popularity = rng.normal(0.0, 0.8, n_items)

    price_z = (log_price - log_price.mean()) / log_price.std()
    seg_pref = np.array([-1.0, 0.0, 1.0])[segment]
    affinity = 3.0 * (u_lat @ i_lat.T) + popularity[None, :] + 0.8 * seg_pref[:, None] * price_z[None, :]

    # Views: without replacement from softmax(affinity / T) via the Gumbel top-k trick.
    n_views = np.clip(rng.poisson(mean_views, n_users), 3, n_items)
    keys = affinity / temperature + rng.gumbel(size=affinity.shape)
    order = np.argsort(-keys, axis=1)
    rows_u, rows_i = [], []
    for u in range(n_users):
        sel = order[u, : n_views[u]]
        rows_u.append(np.full(len(sel), u))
        rows_i.append(rng.permutation(sel))  # the visiting order is random, not by preference
    vu = np.concatenate(rows_u)
    vi = np.concatenate(rows_i)
    a = affinity[vu, vi]
    az = (a - a.mean()) / a.std()
    cart = rng.random(len(a)) < 1.0 / (1.0 + np.exp(-(2.0 * az - 1.0)))
    buy = cart & (rng.random(len(a)) < 1.0 / (1.0 + np.exp(-(1.5 * az - 0.3))))
    event = np.where(buy, "purchase", np.where(cart, "cart", "view"))

    # Timestamps: a user's visits in order across 90 days, users interleaved.
    start = rng.uniform(0, 30 * 86400, n_users)
    ts = np.empty(len(vu))
    pos = 0
    for u in range(n_users):
        m = n_views[u]
        ts[pos:pos + m] = start[u] + np.cumsum(rng.exponential(60 * 86400 / max(m, 1), m))
        pos += m
    base = 1_700_000_000
    log = pd.DataFrame({
        "user_id": [f"u{u}" for u in vu], "item_id": [f"i{i}" for i in vi],
        "event": event, "timestamp": (base + ts).astype(np.int64),
    }).sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)
    users = pd.DataFrame({
        "user_id": [f"u{u}" for u in range(n_users)], "age": age,
        "gender": np.array(GENDERS)[gender], "country": np.array(COUNTRIES)[country],
        "segment": np.array(SEGMENTS)[segment],
    })
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n_items)], "category": [f"c{c}" for c in category],
        "brand": [f"b{b}" for b in brand], "price": np.round(np.exp(log_price), 2),
        "colour": np.array(COLOURS)[colour], "styles": ["|".join(STYLES[j] for j in s) for s in style_sets],
    })
    return log, users, items


USER_SPECS = [FeatureSpec("age", "numeric", buckets=6), FeatureSpec("gender"), FeatureSpec("country"),
              FeatureSpec("segment")]
ITEM_SPECS = [FeatureSpec("category"), FeatureSpec("brand"), FeatureSpec("price", "numeric", buckets=8),
              FeatureSpec("colour"), FeatureSpec("styles", "multi")]


class SyntheticSource:
    """Data source for ``data=synthetic``: the generator above, validated like a file. The
    defaults of its config keys live in configs/data/synthetic.yaml."""

    def __init__(self, *, use_user_features: bool, use_item_features: bool, **generator_kwargs):
        self.kwargs = generator_kwargs
        self.use_user_features = use_user_features
        self.use_item_features = use_item_features

    def load(self) -> RawData:
        from rankers.data.features import validate_table

        log, users, items = generate(**self.kwargs)
        log = EventLog.from_frame(validate_log(log, "synthetic log", grades=DEFAULT_GRADES)).deduplicate()
        uspecs = USER_SPECS if self.use_user_features else []
        ispecs = ITEM_SPECS if self.use_item_features else []
        return RawData(
            log=log, name="synthetic",
            users=validate_table(users, "user_id", uspecs, "synthetic users") if uspecs else None,
            items=validate_table(items, "item_id", ispecs, "synthetic items") if ispecs else None,
            user_specs=list(uspecs), item_specs=list(ispecs), max_grade=max(DEFAULT_GRADES.values()),
        )
