"""Shared fixtures: the Hydra config composed as scripts/train.py does, shrunk for tests; small
prepared data; random-weight exports."""
import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from rankers.artifact.testing import random_export
from rankers.data.dataset import prepare
from rankers.data.synthetic import SyntheticSource
from rankers.training.sampling import Negatives

CONFIGS = str(Path(__file__).resolve().parent.parent / "rankers" / "conf")
LEAVE_LAST = {"kind": "leave_last_n", "n": 1}
N_ITEMS = 300  # the random exports'
N_USERS = 60


def make_cfg(tmp_path: Path, overrides=()) -> DictConfig:
    """The train config at test size: small synthetic data (unless the overrides pick another
    ``data=``), few epochs, outputs under tmp_path."""
    synthetic = [] if any(o.startswith("data=") for o in overrides) else \
        ["data.source.n_users=400", "data.source.n_items=150", "data.source.mean_views=20"]
    base = synthetic + ["trainer.max_epochs=3", "eval.ks=[10]", "trainer.enable_progress_bar=false", "callbacks=none"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=base + list(overrides), return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda *overrides: make_cfg(tmp_path, overrides)


def config_defaults(group: str, option: str) -> dict:
    """The keys of rankers/conf/<group>/<option>.yaml (the one place config defaults live), without
    Hydra's own, for tests that build a configured class directly."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(Path(CONFIGS) / group / f"{option}.yaml"))
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k != "defaults"}


def synthetic_source(n_users: int, n_items: int, seed: int, mean_views: float = 25.0) -> SyntheticSource:
    """The synthetic shop at test size, with user and item features."""
    return SyntheticSource(n_users=n_users, n_items=n_items, mean_views=mean_views, seed=seed,
                           use_user_features=True, use_item_features=True)


def prep(raw, positive_threshold: float, split=LEAVE_LAST, val_split=None, max_history: int = 100,
         history_min_grade=None):
    """``prepare`` with the test suite's usual choices spelled out once."""
    return prepare(raw, positive_threshold, split, val_split, max_history, history_min_grade)


def negatives(uniform: int = 4, popular: int = 2, own: int = 2, catalogue: bool = False, shared: int = 0,
              positives_per_row: int = 1) -> Negatives:
    return Negatives(uniform, popular, own, catalogue, shared, positives_per_row)


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Two valid random-weight exports A and B (different weights) and a broken copy of A, by name."""
    root = tmp_path_factory.mktemp("exports")
    a = random_export(root / "a", n_items=N_ITEMS, n_users=N_USERS, seed=0)
    b = random_export(root / "b", n_items=N_ITEMS, n_users=N_USERS, seed=1)
    broken = root / "broken"
    shutil.copytree(a, broken)
    (broken / "model.ts").write_bytes(b"not a TorchScript archive")
    meta = json.loads((broken / "metadata.json").read_text())
    meta["version"] = "broken-" + meta["version"]
    (broken / "metadata.json").write_text(json.dumps(meta))
    return {"a": a, "b": b, "broken": broken}


def version_of(export_dir: Path) -> str:
    return json.loads((Path(export_dir) / "metadata.json").read_text())["version"]
