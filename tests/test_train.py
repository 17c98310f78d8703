"""Training behaviour: every loss/weighting runs, seeds reproduce, divergence is caught, sweeps write results."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankers.train import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("pair_loss", ["logistic", "hinge"])
@pytest.mark.parametrize("weighting", ["uniform", "graded", "lambda", "warp"])
def test_every_objective_trains(cfg_factory, pair_loss, weighting):
    m = train(cfg_factory(f"loss.pair_loss={pair_loss}", f"loss.weighting={weighting}", "trainer.max_epochs=2",
                          "export=false", "loss.l2=1e-6"))
    assert m["test/ndcg@10"] > m["popularity/ndcg@10"], m


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path):
    from tests.conftest import make_cfg
    a = train(make_cfg(tmp_path / "a", ["trainer.max_epochs=2", "export=false"]))
    b = train(make_cfg(tmp_path / "b", ["trainer.max_epochs=2", "export=false"]))
    c = train(make_cfg(tmp_path / "c", ["trainer.max_epochs=2", "export=false", "seed=1"]))
    assert a["test/ndcg@10"] == b["test/ndcg@10"] and a["test/auc"] == b["test/auc"]
    assert a["test/auc"] != c["test/auc"]


def test_divergence_stops_with_epoch_step_and_lr(cfg_factory):
    cfg = cfg_factory("optim=sgd", "optim.lr=1e30", "export=false", "trainer.max_epochs=1")
    with pytest.raises(FloatingPointError, match=r"epoch 0, step \d+, learning rate 1e\+30"):
        train(cfg)


def test_unknown_config_key_is_hydras_error(cfg_factory):
    from hydra.errors import ConfigCompositionException
    with pytest.raises(ConfigCompositionException):
        cfg_factory("loss.no_such_key=1")


@pytest.mark.slow
def test_multirun_writes_one_metrics_json_per_job(tmp_path):
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", "loss.weighting=uniform,lambda",
           "trainer.max_epochs=1", "data.source.n_users=300", "data.source.n_items=100", "export=false",
           "trainer.enable_progress_bar=false", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = sorted(tmp_path.glob("*/metrics.json"))
    assert len(found) == 2
    weightings = {yaml.safe_load((p.parent / "config.yaml").read_text())["loss"]["weighting"] for p in found}
    assert weightings == {"uniform", "lambda"}
    assert all("test/ndcg@10" in json.loads(p.read_text()) for p in found)
