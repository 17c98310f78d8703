"""The synthetic shop's impression log: what a widget showed on each visit and what was bought,
as impression lists (``ListData``) for the paper's model.

A visit: a user (the generator's own, with hidden tastes) sees ``n_candidates`` items drawn by
the widget's retrieval stage (an existing recommender: Gumbel top-k of half the user's affinity
over the catalogue, in chunks of visits), in a random order; the user examines positions with bias, clicks, carts and buys by
the hidden utility (``World.react``). Label 2: bought; 1: clicked; 0: neither.

Features of a (user, item) row, all observable by a shop (never the hidden latent vectors):
- the item's popularity (observed purchases, log-scaled, noisy) as a number and a decile one-hot;
- its price against the user's usual price (the mean of their past views'), signed and absolute;
- the user's affinity to the item's category and brand: their shares in a sampled past of the
  user's views (``history_views`` per user);
- the item's age (a number no purchase depends on: a feature a sparse model should drop);
- one-hot item category, brand, colour and styles; user segment x price decile; user country x
  category; and a hashed user x category cross (``user_buckets``: the high-dimensional,
  personal part).
Numbers are min-max scaled within each list by the consumer (``ListData.scaled_within_lists``).
"""
from __future__ import annotations

import numpy as np

from rankers.data.lists import ListData
from rankers.data.synthetic import COLOURS, COUNTRIES, SEGMENTS, STYLES, World

CHUNK_VISITS = 4096


def feature_names(world: World, user_buckets: int) -> list:
    """The name of each feature index."""
    n_cat, n_brand = int(world.category.max()) + 1, int(world.brand.max()) + 1
    names = ["log_popularity", "price_vs_usual", "abs_price_vs_usual", "category_affinity", "brand_affinity", "age"]
    names += [f"popularity_decile={d}" for d in range(10)]
    names += [f"category={c}" for c in range(n_cat)] + [f"brand={b}" for b in range(n_brand)]
    names += [f"colour={c}" for c in COLOURS] + [f"style={s}" for s in STYLES]
    names += [f"segment={s} x price_decile={d}" for s in SEGMENTS for d in range(10)]
    names += [f"country={c} x category={k}" for c in COUNTRIES for k in range(n_cat)]
    names += [f"user x category bucket {b}" for b in range(user_buckets)]
    return names


def impression_lists(world: World, n_visits: int, n_candidates: int = 10, history_views: int = 30,
                     user_buckets: int = 4096, seed: int = 0, position_bias: float = 1.0) -> ListData:
    """``n_visits`` impression lists of ``n_candidates`` rows each (features: module docstring)."""
    rng = np.random.default_rng((seed, 11))
    tastes = world.user_tastes()
    n_users, n_items = len(tastes["age"]), world.n_items
    n_cat, n_brand = int(world.category.max()) + 1, int(world.brand.max()) + 1
    # observable item facts
    observed_pop = world.popularity + 0.3 * rng.normal(size=n_items)
    decile = np.minimum((np.argsort(np.argsort(observed_pop)) * 10) // n_items, 9)
    price_decile = np.minimum((np.argsort(np.argsort(world.price_z)) * 10) // n_items, 9)
    age = rng.random(n_items)
    # each user's past (sampled views): the usual price, the category and brand shares
    past_u, past_i, _ = world.browse(tastes, np.arange(n_users), history_views, rng)
    usual = np.bincount(past_u, world.price_z[past_i], n_users) / np.maximum(np.bincount(past_u, minlength=n_users), 1)
    cat_share = np.zeros((n_users, n_cat))
    np.add.at(cat_share, (past_u, world.category[past_i]), 1.0)
    brand_share = np.zeros((n_users, n_brand))
    np.add.at(brand_share, (past_u, world.brand[past_i]), 1.0)
    cat_share /= np.maximum(cat_share.sum(1, keepdims=True), 1.0)
    brand_share /= np.maximum(brand_share.sum(1, keepdims=True), 1.0)
    # feature index blocks
    base = 6
    o_dec = base
    o_cat = o_dec + 10
    o_brand = o_cat + n_cat
    o_col = o_brand + n_brand
    o_style = o_col + len(COLOURS)
    o_segp = o_style + len(STYLES)
    o_cc = o_segp + len(SEGMENTS) * 10
    o_user = o_cc + len(COUNTRIES) * n_cat
    n_features = o_user + user_buckets

    labels, idx_parts, val_parts = [], [], []
    for start in range(0, n_visits, CHUNK_VISITS):
        v = min(CHUNK_VISITS, n_visits - start)
        users = rng.integers(0, n_users, v)
        # the widget's retrieval stage (an existing recommender): half the user's affinity, noise
        keys = 0.5 * world.affinity(tastes, users[:, None], np.arange(n_items)[None, :]) + rng.gumbel(size=(v, n_items))
        items = np.argpartition(-keys, n_candidates - 1, axis=1)[:, :n_candidates]
        items = np.take_along_axis(items, np.argsort(rng.random(items.shape), axis=1), 1)  # shown in random order
        click, _, buy = world.react(tastes, users, items, rng, position_bias)
        labels.append(np.where(buy, 2.0, np.where(click, 1.0, 0.0)).ravel())
        u = np.repeat(users, n_candidates)
        i = items.ravel()
        seg = tastes["segment"][u]
        rel_price = world.price_z[i] - usual[u]
        numeric = np.stack([observed_pop[i], rel_price, np.abs(rel_price), cat_share[u, world.category[i]],
                            brand_share[u, world.brand[i]], age[i]], 1)
        styles = world.styles[i]  # [-1 padded] up to 3 per item
        one_hot = np.stack([o_dec + decile[i], o_cat + world.category[i], o_brand + world.brand[i],
                            o_col + world.colour[i], o_segp + seg * 10 + price_decile[i],
                            o_cc + tastes["country"][u] * n_cat + world.category[i],
                            o_user + (u * 7919 + world.category[i] * 104729) % user_buckets], 1)
        rows = len(i)
        idx = np.concatenate([np.broadcast_to(np.arange(base), (rows, base)), one_hot,
                              np.where(styles >= 0, o_style + styles, -1)], 1)
        val = np.concatenate([numeric, np.ones(one_hot.shape), np.where(styles >= 0, 1.0, 0.0)], 1)
        idx_parts.append(idx)
        val_parts.append(val)
    idx = np.concatenate(idx_parts)
    val = np.concatenate(val_parts)
    keep = idx >= 0
    counts = keep.sum(1)
    return ListData(np.arange(0, n_visits * n_candidates + 1, n_candidates, dtype=np.int64),
                    np.concatenate(labels).astype(np.float32), np.r_[0, np.cumsum(counts)].astype(np.int64),
                    idx[keep].astype(np.int64), val[keep].astype(np.float32), n_features,
                    np.arange(n_visits).astype(str).astype(object))


class SyntheticListSource:
    """``data=shop_lists``: train and test impression lists of one synthetic world (different
    visits), optionally only the lists with a click or a purchase."""

    def __init__(self, n_users: int, n_items: int, mean_views: float, visits: int, test_visits: int,
                 n_candidates: int, user_buckets: int, positives_only: bool, seed: int):
        self.world_args = (n_users, n_items, mean_views, seed)
        self.visits, self.test_visits, self.n_candidates = visits, test_visits, n_candidates
        self.user_buckets, self.positives_only, self.seed = user_buckets, positives_only, seed

    def load(self) -> tuple[ListData, ListData]:
        world = World(*self.world_args)
        out = []
        for n, s in ((self.visits, (self.seed, 0)), (self.test_visits, (self.seed, 1))):
            d = impression_lists(world, n, self.n_candidates, user_buckets=self.user_buckets,
                                 seed=int(np.random.default_rng(s).integers(2**31)))
            out.append(d.with_positives() if self.positives_only else d)
        return out[0], out[1]
