"""Shared fixtures: the Hydra config composed as scripts/train.py does, shrunk for tests."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONFIGS = str(Path(__file__).resolve().parent.parent / "configs")


def make_cfg(tmp_path: Path, overrides=()) -> DictConfig:
    """The train config at test size: small synthetic data, few epochs, outputs under tmp_path."""
    base = ["data.source.n_users=400", "data.source.n_items=150", "data.source.mean_views=20",
            "trainer.max_epochs=3", "eval.ks=[10]", "trainer.enable_progress_bar=false", "callbacks=none"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=base + list(overrides), return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda *overrides: make_cfg(tmp_path, overrides)
