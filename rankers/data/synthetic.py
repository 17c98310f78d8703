"""A seeded synthetic e-commerce world of any size: users, items, a hidden preference model, events.

Users have an age, gender, country and price segment; items a category, brand, price,
colour and a multi-valued set of style tags. A hidden model links the two: user and item
latent vectors are sums of per-feature effects plus individual noise, and a user's affinity
to an item adds item popularity and a segment-by-price term. Each user views items drawn
without replacement from softmax(affinity); views turn into carts and carts into purchases
with probabilities that rise with affinity. Events are timestamped in order, so temporal
splits make sense. Ids are ``u0..`` and ``i0..``.

Memory is bounded by the catalogue and a chunk of users, never users x items: users are
generated in chunks, each from its own seeded stream. A small catalogue is scanned whole
(exact Gumbel top-k over every item); a large one draws each user's candidates from a
proposal that holds the strong part of the affinity, the user's taste for each (category,
brand) group and the items' popularity, and keeps the exact affinity for the choice among
them (Gumbel top-k with importance weights: sampling-importance-resampling).

A large world is written once as a Parquet dataset (one file of events and one of users per
chunk, the items, a manifest) under a directory named by its configuration, built in a
temporary directory and renamed into place: later runs with the same configuration reuse it,
and an interrupted generation leaves nothing a later run could mistake for a dataset.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np
import pandas as pd

from rankers.data.eventlog import EventLog
from rankers.data.events import DEFAULT_GRADES
from rankers.data.features import validate_table
from rankers.data.source import RawData
from rankers.model.tokenizer import FeatureSpec

log = logging.getLogger(__name__)

COUNTRIES = ["DE", "FR", "IT", "ES", "NL", "PL", "AT", "CH", "SE", "DK"]
COUNTRY_P = np.r_[0.3, 0.15, 0.12, 0.1, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03]
SEGMENTS = ["budget", "mainstream", "premium"]
GENDERS = ["f", "m", "x"]
COLOURS = ["black", "white", "grey", "navy", "red", "green", "beige", "blue", "pink", "brown"]
STYLES = ["casual", "formal", "sport", "outdoor", "vintage", "minimal", "street", "classic",
          "boho", "retro", "techwear", "preppy"]
EVENTS = np.array(["view", "cart", "purchase"], dtype=object)
CHUNK = 4096            # users per chunk: [CHUNK, FULL_SCAN] and [CHUNK, CANDIDATES, k] stay ~100 MB
FULL_SCAN = 4096        # catalogues up to this size are scanned whole, per user
CANDIDATES = 256        # a larger catalogue: candidates drawn per user
FORMAT = "rankers.synthetic/1"

USER_SPECS = [FeatureSpec("age", "numeric", buckets=6), FeatureSpec("gender"), FeatureSpec("country"),
              FeatureSpec("segment")]
ITEM_SPECS = [FeatureSpec("category"), FeatureSpec("brand"), FeatureSpec("price", "numeric", buckets=8),
              FeatureSpec("colour"), FeatureSpec("styles", "multi")]


def sorted_ids(prefix: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids sorted as strings, the position of entity j in that order [n]) for ids prefix0..prefix{n-1}."""
    ids = np.char.add(prefix, np.arange(n).astype(str))
    order = np.argsort(ids)
    rank = np.empty(n, np.int32)
    rank[order] = np.arange(n, dtype=np.int32)
    return ids[order].astype(object), rank


class World:
    """The hidden model: item attributes and latent vectors, per-feature user effects.

    Args: n_users, n_items, mean_views (Poisson mean of views per user), seed; the rest shape
    the world (latent_dim, noise levels, softmax temperature).
    """

    def __init__(self, n_users: int, n_items: int, mean_views: float, seed: int, n_categories: int = 12,
                 n_brands: int = 40, latent_dim: int = 16, user_noise: float = 0.8, item_noise: float = 0.5,
                 temperature: float = 1.0):
        if n_users < 1 or n_items < 1 or mean_views <= 0:
            raise ValueError(f"synthetic: need n_users, n_items >= 1 and mean_views > 0, got {n_users}, {n_items}, "
                             f"{mean_views}")
        self.n_users, self.n_items, self.mean_views, self.seed = n_users, n_items, mean_views, seed
        self.user_noise, self.temperature, self.k = user_noise, temperature, latent_dim
        rng = np.random.default_rng((seed, 0))
        k = latent_dim
        eff = lambda n: rng.normal(0.0, 1.0 / np.sqrt(k), size=(n, k))  # noqa: E731
        self.age_eff, self.gender_eff = eff(6), eff(len(GENDERS))
        self.country_eff, self.segment_eff = 0.6 * eff(len(COUNTRIES)), eff(len(SEGMENTS))
        # Items: brands sit in a price tier; styles are a multi-valued bag.
        n = n_items
        self.category = rng.integers(0, n_categories, n)
        self.brand = rng.integers(0, n_brands, n)
        brand_tier = rng.normal(0.0, 0.6, n_brands)
        self.log_price = 3.5 + brand_tier[self.brand] + 0.3 * rng.normal(size=n) + 0.2 * (self.category % 3)
        self.colour = rng.integers(0, len(COLOURS), n)
        n_styles = rng.integers(1, 4, n)
        styles = np.argsort(rng.random((n, len(STYLES))), axis=1)  # a random order of the styles per item
        self.style_mask = np.arange(len(STYLES))[None, :] < n_styles[:, None]
        self.styles = np.where(self.style_mask, styles, -1)
        cat_eff, brand_eff = 1.2 * eff(n_categories), eff(n_brands)
        style_eff = eff(len(STYLES))
        style_mean = (style_eff[np.maximum(self.styles, 0)] * self.style_mask[..., None]).sum(1) / n_styles[:, None]
        self.i_lat = (cat_eff[self.category] + brand_eff[self.brand] + 0.5 * eff(len(COLOURS))[self.colour]
                      + style_mean + item_noise * eff(n))
        self.popularity = rng.normal(0.0, 0.8, n)
        self.price_z = (self.log_price - self.log_price.mean()) / max(self.log_price.std(), 1e-12)
        # The proposal of a large catalogue: groups (category, brand) hold the affinity's strongest
        # terms; within a group, items come by popularity.
        self.group = self.category * n_brands + self.brand
        self.group_eff = 3.0 * (cat_eff[:, None, :] + brand_eff[None, :, :]).reshape(-1, k)  # [G, k]
        self.item_order = np.lexsort((np.arange(n), self.group))  # items by group
        g_sorted = self.group[self.item_order]
        self.group_start = np.searchsorted(g_sorted, np.arange(len(self.group_eff) + 1))
        w = np.exp(self.popularity[self.item_order])
        sizes = np.diff(self.group_start)
        self.group_mass = np.bincount(g_sorted, weights=w, minlength=len(self.group_eff))
        cum = np.cumsum(w)
        before = np.concatenate([[0.0], cum])[self.group_start[:-1]]
        # group g's items cover (g, g + 1]: one searchsorted finds group and item at once
        self.within_cdf = (cum - np.repeat(before, sizes)) / np.repeat(np.where(sizes > 0, self.group_mass, 1.0), sizes)
        self.within_cdf += np.repeat(np.arange(len(self.group_eff)), sizes)
        # Affinity scale of the purchase funnel, from a pilot sample of views (fixed per world).
        pilot = self._chunk(min(n_users, 2000), np.random.default_rng((seed, 1)))
        self.funnel = (float(pilot.mean()), float(pilot.std()) or 1.0)

    # -- users ------------------------------------------------------------------------------
    def users(self, rng: np.random.Generator, n: int) -> dict:
        age = rng.integers(18, 71, n)
        gender = rng.integers(0, len(GENDERS), n)
        country = rng.choice(len(COUNTRIES), n, p=COUNTRY_P)
        segment = rng.choice(len(SEGMENTS), n, p=[0.35, 0.45, 0.2])
        lat = (self.age_eff[np.minimum((age - 18) // 10, 5)] + self.gender_eff[gender] + self.country_eff[country]
               + self.segment_eff[segment] + self.user_noise * rng.normal(0.0, 1.0 / np.sqrt(self.k), (n, self.k)))
        return {"age": age, "gender": gender, "country": country, "segment": segment, "lat": lat}

    def affinity(self, users: dict, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Affinity of users[rows] to items (same shape)."""
        seg = np.array([-1.0, 0.0, 1.0])[users["segment"][rows]]
        return (3.0 * np.einsum("...k,...k->...", users["lat"][rows], self.i_lat[items])
                + self.popularity[items] + 0.8 * seg * self.price_z[items])

    def affinity_all(self, users: dict) -> np.ndarray:
        """Affinity of every user to every item [n, N] (a small catalogue)."""
        seg = np.array([-1.0, 0.0, 1.0])[users["segment"]]
        return (3.0 * users["lat"] @ self.i_lat.T + self.popularity[None, :]
                + 0.8 * seg[:, None] * self.price_z[None, :])

    def _views(self, users: dict, n_views: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Each user's viewed items without replacement from softmax(affinity / T): (user row, item)."""
        n, T = len(n_views), self.temperature
        if self.n_items <= FULL_SCAN:
            items = np.broadcast_to(np.arange(self.n_items), (n, self.n_items))
            keys = self.affinity_all(users) / T + rng.gumbel(size=items.shape)
        else:  # sampling-importance-resampling from the (category, brand) proposal
            logits = users["lat"] @ self.group_eff.T + np.log(np.maximum(self.group_mass, 1e-300))[None, :]
            logits[:, self.group_mass == 0] = -np.inf
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            cdf = np.cumsum(p, 1)
            cdf[:, -1] = 1.0
            G = cdf.shape[1]
            r = rng.random((n, CANDIDATES))
            group = np.searchsorted((cdf + np.arange(n)[:, None]).ravel(), (r + np.arange(n)[:, None]).ravel())
            group = np.minimum(group - np.repeat(np.arange(n), CANDIDATES) * G, G - 1).reshape(n, CANDIDATES)
            at = np.searchsorted(self.within_cdf, group + rng.random(group.shape))
            at = np.clip(at, self.group_start[group], self.group_start[group + 1] - 1)
            items = self.item_order[at]
            q = np.take_along_axis(p, group, 1) * np.exp(self.popularity[items]) / self.group_mass[group]
            # Weigh each distinct candidate by its chance to be among the draws at all,
            # 1 - (1 - q)^M (the expected-count correction of sampled softmax), not by q: the
            # duplicates are dropped below, so a popular item must not count once per draw.
            log_in = np.log(-np.expm1(CANDIDATES * np.log1p(-np.minimum(q, 1.0 - 1e-12))))
            keys = self.affinity(users, np.arange(n)[:, None], items) / T - log_in + rng.gumbel(size=items.shape)
            # an item drawn twice is one candidate
            o = np.argsort(items, axis=1, kind="stable")
            s = np.take_along_axis(items, o, 1)
            dup = np.zeros_like(s, dtype=bool)
            dup[:, 1:] = s[:, 1:] == s[:, :-1]
            np.put_along_axis(keys, o, np.where(dup, -np.inf, np.take_along_axis(keys, o, 1)), 1)
            n_views = np.minimum(n_views, (~dup).sum(1))
        best = np.argsort(-keys, axis=1)
        take = np.arange(best.shape[1])[None, :] < n_views[:, None]
        rows = np.broadcast_to(np.arange(n)[:, None], best.shape)[take]
        return rows, np.take_along_axis(items, best, 1)[take]

    def _chunk(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The affinities of the views of n users (the funnel's pilot)."""
        users = self.users(rng, n)
        n_views = np.clip(rng.poisson(self.mean_views, n), 3, self.n_items)
        rows, items = self._views(users, n_views, rng)
        return self.affinity(users, rows, items)

    def chunk(self, index: int) -> tuple[dict, dict]:
        """Users [u0, u0 + n) of chunk ``index``: (user table columns, events: user, item, event code
        0 view / 1 cart / 2 purchase, timestamp), from the chunk's own stream."""
        u0 = index * CHUNK
        n = min(CHUNK, self.n_users - u0)
        rng, users = self._chunk_stream(index)
        n_views = np.clip(rng.poisson(self.mean_views, n), 3, self.n_items)
        rows, items = self._views(users, n_views, rng)
        cart, buy = self.buys(self.affinity(users, rows, items), rng)
        # A user's visits in a random order (not by preference) across 60 days after a start in
        # the first 30: exponential gaps, cumulated per user.
        order = np.lexsort((rng.random(len(rows)), rows))
        rows, items, cart, buy = rows[order], items[order], cart[order], buy[order]
        per_user = np.bincount(rows, minlength=n)
        gaps = rng.exponential(60 * 86400 / np.maximum(per_user, 1)[rows])
        cum = np.cumsum(gaps)
        before = np.concatenate([[0.0], cum])[np.concatenate([[0], np.cumsum(per_user)[:-1]])]
        ts = rng.uniform(0, 30 * 86400, n)[rows] + cum - np.repeat(before, per_user)
        events = {"user": rows + u0, "item": items, "event": np.where(buy, 2, np.where(cart, 1, 0)),
                  "timestamp": (1_700_000_000 + ts).astype(np.int64)}
        table = {"user": np.arange(u0, u0 + n), "age": users["age"], "gender": users["gender"],
                 "country": users["country"], "segment": users["segment"]}
        return table, events

    def _chunk_stream(self, index: int) -> tuple[np.random.Generator, dict]:
        """Chunk ``index``'s random stream and its users (drawn first from it)."""
        rng = np.random.default_rng((self.seed, 2, index))
        return rng, self.users(rng, min(CHUNK, self.n_users - index * CHUNK))

    def user_tastes(self) -> dict:
        """Every user's hidden attributes (the ``users`` dict; row j is user ``u<j>``), as the
        log's generation drew them: what a simulation of the same users reacts with."""
        parts = [self._chunk_stream(i)[1] for i in range((self.n_users + CHUNK - 1) // CHUNK)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def react(self, tastes: dict, users: np.ndarray, items: np.ndarray, rng: np.random.Generator,
              position_bias: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """How users respond to ranked lists: users [R] (rows of ``tastes``), items [R, k] shown
        top first -> (click, cart, purchase) bool [R, k]. A position is examined with
        probability 1 / log2(position + 2) ** position_bias (position 0 on top); an examined
        item is clicked, carted and bought with probabilities rising with the user's affinity to
        it, the generator's funnel."""
        a = self.affinity(tastes, users[:, None], items)
        examined = rng.random(items.shape) < 1.0 / np.log2(np.arange(items.shape[1]) + 2.0)[None, :] ** position_bias
        az = (a - self.funnel[0]) / self.funnel[1]
        click = examined & (rng.random(items.shape) < 1.0 / (1.0 + np.exp(-(az - 1.0))))
        cart, buy = self.buys(a, rng)
        return click, click & cart, click & buy

    def buys(self, affinity: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The purchase funnel of viewed items with these affinities [...]: (cart, purchase) bool,
        with probabilities rising with the affinity (scaled by the world's pilot sample)."""
        az = (affinity - self.funnel[0]) / self.funnel[1]
        cart = rng.random(az.shape) < 1.0 / (1.0 + np.exp(-(2.0 * az - 1.0)))
        buy = cart & (rng.random(az.shape) < 1.0 / (1.0 + np.exp(-(1.5 * az - 0.3))))
        return cart, buy

    def browse(self, tastes: dict, users: np.ndarray, mean_views: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Organic visits (no recommendation involved) of users [V] (rows of ``tastes``): each
        views about ``mean_views`` items drawn as the log's generation draws them, and some views
        turn into carts and purchases -> (user row [E], item [E], event code [E]: 0 view, 1 cart,
        2 purchase)."""
        sub = {k: v[users] for k, v in tastes.items()}
        n_views = np.clip(rng.poisson(mean_views, len(users)), 1, self.n_items)
        rows, items = self._views(sub, n_views, rng)
        cart, buy = self.buys(self.affinity(sub, rows, items), rng)
        return users[rows], items, np.where(buy, 2, np.where(cart, 1, 0))

    def chunks(self) -> Iterator[tuple[dict, dict]]:
        for index in range((self.n_users + CHUNK - 1) // CHUNK):
            yield self.chunk(index)

    def items_table(self) -> pd.DataFrame:
        names = np.array(STYLES + [""])[self.styles]  # -1 -> ""
        styles = names[:, 0]
        for j in range(1, names.shape[1]):
            styles = np.where(names[:, j] != "", np.char.add(np.char.add(styles, "|"), names[:, j]), styles)
        return pd.DataFrame({
            "item_id": np.char.add("i", np.arange(self.n_items).astype(str)),
            "category": np.char.add("c", self.category.astype(str)), "brand": np.char.add("b", self.brand.astype(str)),
            "price": np.round(np.exp(self.log_price), 2), "colour": np.array(COLOURS)[self.colour], "styles": styles})


def users_frame(table: dict) -> pd.DataFrame:
    return pd.DataFrame({"user_id": np.char.add("u", table["user"].astype(str)), "age": table["age"],
                         "gender": np.array(GENDERS)[table["gender"]], "country": np.array(COUNTRIES)[table["country"]],
                         "segment": np.array(SEGMENTS)[table["segment"]]})


def generate(n_users: int, n_items: int, mean_views: float, seed: int, **world) -> tuple[EventLog, pd.DataFrame,
                                                                                          pd.DataFrame]:
    """The world in memory: (events as an EventLog, users table, items table)."""
    w = World(n_users, n_items, mean_views, seed, **world)
    user_ids, user_rank = sorted_ids("u", n_users)
    item_ids, item_rank = sorted_ids("i", n_items)
    tables, logs = [], []
    for table, ev in w.chunks():
        tables.append(users_frame(table))
        logs.append(EventLog(user_rank[ev["user"]], item_rank[ev["item"]],
                             np.asarray(list(DEFAULT_GRADES.values()), np.float32)[ev["event"]],
                             ev["timestamp"].astype(np.float64), np.ones(len(ev["user"]), np.float32),
                             user_ids, item_ids))
    events = EventLog(*(np.concatenate([getattr(g, f) for g in logs]) for f in
                        ("user", "item", "grade", "timestamp", "weight")), user_ids, item_ids)
    return events, pd.concat(tables, ignore_index=True), w.items_table()


def dataset_dir(cache_dir: str | Path, config: dict) -> Path:
    """Where the world of ``config`` is (or will be) written: named by a hash of the config."""
    key = hashlib.sha1(json.dumps({"format": FORMAT, **config}, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"synthetic-{key}"


def write_dataset(cache_dir: str | Path, n_users: int, n_items: int, mean_views: float, seed: int,
                  **world) -> Path:
    """Write the world as Parquet (events/part-*.parquet, users/part-*.parquet, items.parquet,
    manifest.json) unless it is there already; returns its directory. Built in a temporary
    directory and renamed into place."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    config = {"n_users": n_users, "n_items": n_items, "mean_views": mean_views, "seed": seed, **world}
    target = dataset_dir(cache_dir, config)
    if (target / "manifest.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        w = World(n_users, n_items, mean_views, seed, **world)
        (tmp / "events").mkdir()
        (tmp / "users").mkdir()
        events = pa.array(EVENTS.astype(str))
        n_events = 0
        for index, (table, ev) in enumerate(w.chunks()):
            pq.write_table(pa.Table.from_pandas(users_frame(table), preserve_index=False),
                           tmp / "users" / f"part-{index:05d}.parquet")
            ids = lambda p, a: pc.binary_join_element_wise(p, pc.cast(pa.array(a), pa.string()), "")  # noqa: E731
            pq.write_table(pa.table({"user_id": ids("u", ev["user"]), "item_id": ids("i", ev["item"]),
                                     "event": pc.take(events, pa.array(ev["event"])),
                                     "timestamp": pa.array(ev["timestamp"])}),
                           tmp / "events" / f"part-{index:05d}.parquet", row_group_size=1 << 18)
            n_events += len(ev["user"])
            log.info("synthetic: chunk %d, %d events so far", index, n_events)
        w.items_table().to_parquet(tmp / "items.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps({"format": FORMAT, "config": config, "events": n_events},
                                                      indent=2))
        try:
            os.rename(tmp, target)
        except OSError:  # another run finished the same world first: keep theirs
            if not (target / "manifest.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def events_frame(events: EventLog) -> pd.DataFrame:
    """A log as the event-log table ``data=files`` reads: user_id, item_id, event (view, cart,
    purchase), timestamp."""
    names = np.array(list(DEFAULT_GRADES))[np.searchsorted(np.array(list(DEFAULT_GRADES.values())), events.grade)]
    return pd.DataFrame({"user_id": np.asarray(events.user_ids)[events.user],
                         "item_id": np.asarray(events.item_ids)[events.item], "event": names,
                         "timestamp": events.timestamp})


def feature_overrides(users: str | Path, items: str | Path) -> List[str]:
    """The ``data=files`` overrides that read the synthetic users and items tables (written as
    files) with the synthetic source's own feature specs."""
    def specs(ss) -> str:
        return "[" + ",".join("{" + ",".join(f"{k}:{v}" for k, v in vars(x).items()) + "}" for x in ss) + "]"
    return [f"data.users={users}", f"data.items={items}", f"data.user_features={specs(USER_SPECS)}",
            f"data.item_features={specs(ITEM_SPECS)}"]


class SyntheticSource:
    """Data source for ``data=synthetic`` (the defaults of its keys live in rankers/conf/data/synthetic.yaml).

    ``cache_dir``: where large worlds are written as Parquet and reused; ``cache_min_events``:
    worlds of fewer expected events (n_users x mean_views) stay in memory.
    """

    def __init__(self, *, n_users: int, n_items: int, mean_views: float, seed: int, use_user_features: bool,
                 use_item_features: bool, cache_dir: Optional[str] = None, cache_min_events: float = float("inf"),
                 **world):
        self.config = {"n_users": n_users, "n_items": n_items, "mean_views": mean_views, "seed": seed, **world}
        self.use_user_features, self.use_item_features = use_user_features, use_item_features
        self.cache_dir, self.cache_min_events = cache_dir, cache_min_events

    def load(self) -> RawData:
        uspecs = USER_SPECS if self.use_user_features else []
        ispecs = ITEM_SPECS if self.use_item_features else []
        c = self.config
        if self.cache_dir is not None and c["n_users"] * c["mean_views"] >= self.cache_min_events:
            from rankers.data.files import FileSource

            d = write_dataset(self.cache_dir, **c)
            raw = FileSource(str(d / "events"), None, str(d / "items.parquet"), str(d / "users"),
                             [s.__dict__ for s in ispecs], [s.__dict__ for s in uspecs]).load()
            raw.name = "synthetic"
            return raw
        events, users, items = generate(**c)  # valid by construction: no per-row checks
        return RawData(
            log=events.deduplicate(), name="synthetic",
            users=validate_table(users, "user_id", uspecs, "synthetic users") if uspecs else None,
            items=validate_table(items, "item_id", ispecs, "synthetic items") if ispecs else None,
            user_specs=list(uspecs), item_specs=list(ispecs), max_grade=max(DEFAULT_GRADES.values()),
        )
