"""The synthetic shop's impression log: what a widget showed on each visit and what was bought,
as a table (``impression_table``: a row per shown candidate, the columns a shop would log) and
as impression lists (``impression_lists``: the table encoded by ``shop_encoding`` with the one
list encoding, ``rankers.model.list_encoder``, that model.ts's ``rerank`` runs too).

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
- one-hot item category, brand, colour and styles; the crosses user segment x price decile and
  user country x category; and the user id x category cross hashed into ``user_buckets``
  dimensions (the high-dimensional, personal part).
Every feature is min-max scaled within its list by the consumer (``ListData.scaled_within_lists``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from rankers.artifact.two_stage import RETRIEVAL
from rankers.data.lists import ListData, encode_table, lists_from_rows
from rankers.data.synthetic import COLOURS, COUNTRIES, SEGMENTS, STYLES, World
from rankers.model.list_encoder import CROSS, CategoricalFeature, ListEncoder, ListEncoding

CHUNK_VISITS = 4096
NUMERIC = ["log_popularity", "price_vs_usual", "abs_price_vs_usual", "category_affinity", "brand_affinity", "age"]
# the columns that are the item's own (the same on every list): what a two-stage export stores per item
ITEM_COLUMNS = ["log_popularity", "age", "popularity_decile", "category", "brand", "colour", "styles", "price_decile"]


def _domains(world: World) -> dict:
    n_cat, n_brand = int(world.category.max()) + 1, int(world.brand.max()) + 1
    return {"popularity_decile": [str(d) for d in range(10)], "price_decile": [str(d) for d in range(10)],
            "category": [f"c{c}" for c in range(n_cat)], "brand": [f"b{b}" for b in range(n_brand)],
            "colour": list(COLOURS), "styles": list(STYLES), "segment": list(SEGMENTS), "country": list(COUNTRIES)}


def shop_encoding(world: World, user_buckets: int, retrieval: bool = False) -> ListEncoding:
    """The features of the impression table (module docstring): one-hots over the world's value
    domains (so every table of one world encodes alike), the user x category cross hashed.
    ``retrieval``: the retrieval score is a numeric feature too."""
    dom = _domains(world)

    def one_hot(*cols, sep=""):
        values = dom[cols[0]]
        for c in cols[1:]:
            values = [a + CROSS + b for a in values for b in dom[c]]
        return CategoricalFeature(list(cols), 0, sep, {v: i for i, v in enumerate(values)})

    cats = [one_hot("popularity_decile"), one_hot("category"), one_hot("brand"), one_hot("colour"),
            one_hot("styles", sep="|"), one_hot("segment", "price_decile"), one_hot("country", "category"),
            CategoricalFeature(["user_id", "category"], int(user_buckets))]
    return ListEncoding(NUMERIC + ([RETRIEVAL] if retrieval else []), cats)


def feature_names(world: World, user_buckets: int) -> list:
    """The name of each feature index."""
    return shop_encoding(world, user_buckets).names()


def _coded(codes: np.ndarray, names) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=list(names))


def item_frame(world: World, seed: int = 0) -> pd.DataFrame:
    """The observable item facts, one row per item (``item_id`` i<j>): noisy log popularity and its
    decile, age, category, brand, colour, styles (joined by '|'), price decile."""
    rng = np.random.default_rng((seed, 12))
    n = world.n_items
    observed_pop = world.popularity + 0.3 * rng.normal(size=n)
    decile = np.minimum((np.argsort(np.argsort(observed_pop)) * 10) // n, 9)
    price_decile = np.minimum((np.argsort(np.argsort(world.price_z)) * 10) // n, 9)
    names = np.array(STYLES + [""], dtype=object)[world.styles]  # -1 -> ""
    styles = names[:, 0]
    for j in range(1, names.shape[1]):
        styles = np.where(names[:, j] != "", styles + "|" + names[:, j], styles)
    return pd.DataFrame({"item_id": np.char.add("i", np.arange(n).astype(str)).astype(object),
                         "log_popularity": observed_pop, "age": rng.random(n), "popularity_decile": decile,
                         "category": np.char.add("c", world.category.astype(str)).astype(object),
                         "brand": np.char.add("b", world.brand.astype(str)).astype(object),
                         "colour": np.array(COLOURS, dtype=object)[world.colour], "styles": styles,
                         "price_decile": price_decile})


def impression_table(world: World, n_visits: int, n_candidates: int = 10, history_views: int = 30,
                     seed: int = 0, position_bias: float = 1.0) -> pd.DataFrame:
    """``n_visits`` impression lists of ``n_candidates`` rows: a row per shown candidate with
    list_id, user_id (u<j>, the synthetic shop's ids), item_id, position, label and the feature
    columns (module docstring)."""
    rng = np.random.default_rng((seed, 11))
    tastes = world.user_tastes()
    n_users, n_items = len(tastes["age"]), world.n_items
    n_cat, n_brand = int(world.category.max()) + 1, int(world.brand.max()) + 1
    items_df = item_frame(world)
    # each user's past (sampled views): the usual price, the category and brand shares
    past_u, past_i, _ = world.browse(tastes, np.arange(n_users), history_views, rng)
    usual = np.bincount(past_u, world.price_z[past_i], n_users) / np.maximum(np.bincount(past_u, minlength=n_users), 1)
    cat_share = np.zeros((n_users, n_cat))
    np.add.at(cat_share, (past_u, world.category[past_i]), 1.0)
    brand_share = np.zeros((n_users, n_brand))
    np.add.at(brand_share, (past_u, world.brand[past_i]), 1.0)
    cat_share /= np.maximum(cat_share.sum(1, keepdims=True), 1.0)
    brand_share /= np.maximum(brand_share.sum(1, keepdims=True), 1.0)

    users_all, items_all, labels = [], [], []
    for start in range(0, n_visits, CHUNK_VISITS):
        v = min(CHUNK_VISITS, n_visits - start)
        users = rng.integers(0, n_users, v)
        # the widget's retrieval stage (an existing recommender): half the user's affinity, noise
        keys = 0.5 * world.affinity(tastes, users[:, None], np.arange(n_items)[None, :]) + rng.gumbel(size=(v, n_items))
        items = np.argpartition(-keys, n_candidates - 1, axis=1)[:, :n_candidates]
        items = np.take_along_axis(items, np.argsort(rng.random(items.shape), axis=1), 1)  # shown in random order
        click, _, buy = world.react(tastes, users, items, rng, position_bias)
        labels.append(np.where(buy, 2.0, np.where(click, 1.0, 0.0)).ravel())
        users_all.append(np.repeat(users, n_candidates))
        items_all.append(items.ravel())
    u, i = np.concatenate(users_all), np.concatenate(items_all)
    rel_price = world.price_z[i] - usual[u]
    dom = _domains(world)
    df = pd.DataFrame({
        "list_id": np.repeat(np.arange(n_visits), n_candidates),
        "user_id": _coded(u, np.char.add("u", np.arange(n_users).astype(str))),
        "item_id": _coded(i, items_df["item_id"]),
        "position": np.tile(np.arange(n_candidates), n_visits),
        "label": np.concatenate(labels).astype(np.float32),
        "log_popularity": items_df["log_popularity"].to_numpy()[i], "price_vs_usual": rel_price,
        "abs_price_vs_usual": np.abs(rel_price), "category_affinity": cat_share[u, world.category[i]],
        "brand_affinity": brand_share[u, world.brand[i]], "age": items_df["age"].to_numpy()[i]})
    for c in ["popularity_decile", "price_decile"]:
        df[c] = _coded(items_df[c].to_numpy()[i], dom[c])
    for c in ["category", "brand", "colour", "styles"]:
        codes, names = pd.factorize(items_df[c])
        df[c] = _coded(codes[i], names)
    df["segment"] = _coded(tastes["segment"][u], SEGMENTS)
    df["country"] = _coded(tastes["country"][u], COUNTRIES)
    return df


def impression_lists(world: World, n_visits: int, n_candidates: int = 10, history_views: int = 30,
                     user_buckets: int = 4096, seed: int = 0, position_bias: float = 1.0) -> ListData:
    """``impression_table`` encoded by ``shop_encoding`` (``n_candidates`` rows per list)."""
    df = impression_table(world, n_visits, n_candidates, history_views, seed, position_bias)
    return encode_lists(df, shop_encoding(world, user_buckets), "synthetic impressions")


def encode_lists(df: pd.DataFrame, encoding: ListEncoding, source: str) -> ListData:
    """A list table's rows (list_id, label, the encoding's columns) as ListData."""
    idx, val = encode_table(ListEncoder(encoding), df, source)
    return lists_from_rows(df["list_id"].to_numpy(), df["label"].to_numpy(np.float32), idx, val,
                           encoding.n_features, source)


class SyntheticListSource:
    """``data=shop_lists``: train and test impression lists of one synthetic world (different
    visits), optionally only the lists with a click or a purchase. ``retriever``: a two-tower
    export of the same world (``python scripts/train.py``): its score of each row becomes the
    numeric feature ``retrieval_score`` (the two-stage reranker's input), and ``retrieval`` the
    test lists ranked by it alone."""

    def __init__(self, n_users: int, n_items: int, mean_views: float, visits: int, test_visits: int,
                 n_candidates: int, user_buckets: int, positives_only: bool, seed: int,
                 retriever: Optional[str] = None):
        self.world_args = (n_users, n_items, mean_views, seed)
        self.visits, self.test_visits, self.n_candidates = visits, test_visits, n_candidates
        self.user_buckets, self.positives_only, self.seed = user_buckets, positives_only, seed
        self.retriever = retriever
        self.item_columns = ITEM_COLUMNS
        self.encoding: Optional[ListEncoding] = None
        self._module = None
        self.items: Optional[pd.DataFrame] = None

    def table(self, which: str) -> pd.DataFrame:
        """The ``train`` or ``test`` impression table (raw columns, the retriever's score included):
        what ``load`` encodes, and what a client of the two-stage model.ts would send."""
        world = World(*self.world_args)
        n, s = (self.visits, (self.seed, 0)) if which == "train" else (self.test_visits, (self.seed, 1))
        df = impression_table(world, n, self.n_candidates, seed=int(np.random.default_rng(s).integers(2**31)))
        if self.positives_only:
            best = df.groupby("list_id", sort=False)["label"].transform("max").to_numpy()
            df = df[best >= 1.0].reset_index(drop=True)
        if self.retriever:
            from rankers.artifact.two_stage import load_retriever, retrieval_scores

            if self._module is None:
                self._module = load_retriever(self.retriever)
            try:
                df[RETRIEVAL] = retrieval_scores(self._module, df["user_id"], df["item_id"])
            except Exception as e:  # the retriever's catalogue is another world's
                raise ValueError(f"retriever {self.retriever} cannot score this world's impressions "
                                 f"({str(e).strip().splitlines()[-1]}): train it on the same synthetic world "
                                 "(data.source n_users, n_items, mean_views and seed)") from None
        return df

    def load(self) -> tuple[ListData, ListData]:
        world = World(*self.world_args)
        self.encoding = shop_encoding(world, self.user_buckets, retrieval=bool(self.retriever))
        self.items = item_frame(world)
        out = [encode_lists(self.table(which), self.encoding, "synthetic impressions") for which in ("train", "test")]
        return out[0], out[1]
