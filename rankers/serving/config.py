"""The service's settings: the one place their defaults live.

``ServeSettings`` is also the schema of ``rankers/conf/serve.yaml`` (a Hydra structured config,
``register()``), so ``python scripts/serve.py port=9000`` is type-checked against it and a
key that does not exist is Hydra's error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING, OmegaConf

SCHEMA = "serve_schema"


@dataclass
class ServeSettings:
    """What ``create_app`` and ``serve`` need.

    model_path: an export directory or a symlink to one; repointing it swaps the model in.
    challenger_path / challenger_share: an optional A/B challenger and its share of user ids
        (a stable hash, sticky); ab_salt: changing it reshuffles who sees the challenger.
    events_path: POST /events appends here (CSV: user_id,item_id,event,timestamp,variant,
        model_version); None turns /events off (503).
    impressions_path: /recommend logs what it returned here (JSON lines: request_id, timestamp,
        user_id, variant, model_version, items, scores; rankers.serving.impressions), beside
        the event log; None turns it off. impressions_max_bytes: the file is rotated (renamed
        with a UTC time) once it is at least this large.
    poll_interval_s: seconds between checks of the model paths for a new export.
    anonymous_fallback: a request with neither a known user_id nor any feature gets the ranking
        the model gives a user it knows nothing about, flagged ``"fallback": "anonymous"``;
        False answers such requests with 422 instead.
    watch: run the swap watcher (tests turn it off).
    isolation: "process" (each model in a worker process: loading a new export never stalls the
        service, whose requests would otherwise wait ~0.1-0.2 s on torch.jit.load holding the
        GIL) or "thread" (in the service's process; tests and tiny catalogues).
    num_threads: torch threads per model; 1 leaves the second core to uvicorn and the swap loader.
    jit_optimize: TorchScript's optimising executor. It profiles and recompiles a new model's
        graph over its first calls (40 ms, then 20 ms, on a 100k-item model); the plain
        interpreter is as fast after that for these few large ops, so with it off a
        swapped-in model is fast from its first request.
    spare_worker: with isolation="process", keep a second process per served model, loaded
        and idle, that takes over at once when the first dies (then a new spare loads in the
        background). Costs one more copy of each model in memory; without it a dead worker is
        replaced by loading the export again (seconds for a large catalogue, requests wait).
    max_body_bytes: the largest request body accepted; a larger one is answered 413 before it
        is read (the default fits any valid request: 10,000 ids of 512 characters).
    host, port, log_level, access_log: uvicorn's.
    """

    model_path: str = MISSING
    challenger_path: Optional[str] = None
    challenger_share: float = 0.1
    ab_salt: str = "rankers-ab"
    events_path: Optional[str] = "outputs/serve/events.csv"
    impressions_path: Optional[str] = "outputs/serve/impressions.jsonl"
    impressions_max_bytes: int = 64 << 20
    poll_interval_s: float = 1.0
    anonymous_fallback: bool = True
    watch: bool = True
    isolation: str = "process"
    num_threads: int = 1
    jit_optimize: bool = False
    spare_worker: bool = True
    max_body_bytes: int = 8 << 20
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    access_log: bool = False

    def __post_init__(self):
        if not self.model_path or self.model_path == MISSING:
            raise ValueError("model_path is required: an export directory or a symlink to one")
        if not 0.0 <= float(self.challenger_share) <= 1.0:
            raise ValueError(f"challenger_share must be in [0, 1], got {self.challenger_share}")
        if not float(self.poll_interval_s) > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {self.poll_interval_s}")
        if not int(self.impressions_max_bytes) >= 1:
            raise ValueError(f"impressions_max_bytes must be >= 1, got {self.impressions_max_bytes}")
        if not int(self.max_body_bytes) >= 1024:
            raise ValueError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.isolation not in ("process", "thread"):
            raise ValueError(f"isolation must be 'process' or 'thread', got {self.isolation!r}")

    @classmethod
    def from_config(cls, cfg) -> "ServeSettings":
        """The settings of a config composed over the schema (``scripts/serve.py``)."""
        return OmegaConf.to_object(cfg)


def register() -> None:
    """Make ``ServeSettings`` the schema that rankers/conf/serve.yaml names in its defaults list."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA, node=ServeSettings)
