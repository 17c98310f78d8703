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


def test_a_bad_export_scan_fails_before_training(cfg_factory, tmp_path):
    cfg = cfg_factory("export_scan=int8")
    with pytest.raises(ValueError, match="export_scan must be one of auto, fp16, fp32, got 'int8'"):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing trained


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


@pytest.mark.slow
@pytest.mark.parametrize("negatives", ["loss.negatives.catalogue=true", "loss.negatives.own=2"])
def test_repeat_term_is_learned_and_exported(tmp_path, negatives):
    # Lower-graded events sit in the users' bags and are negatives: the offset moves below 0.
    import torch

    from tests.conftest import make_cfg

    m = train(make_cfg(tmp_path, ["model.repeat=true", negatives, "trainer.max_epochs=2"]))
    assert m["test/ndcg@10"] > m["popularity/ndcg@10"], m
    assert torch.jit.load(str(tmp_path / "export" / "model.ts")).repeat < 0.0


def test_evaluation_ranks_with_the_repeat_term(tmp_path):
    # The metrics of a model with the repeat term equal a dense brute-force computation.
    import numpy as np
    import pytorch_lightning as pl
    import torch

    from rankers.train import build
    from tests.conftest import make_cfg
    from tests.metrics.test_ranking import reference_metrics

    cfg = make_cfg(tmp_path, ["model.repeat=true", "eval.batch_size=50"])
    dm, module = build(cfg)
    with torch.no_grad():
        module.net.repeat.fill_(-0.8)
    pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False).test(module, datamodule=dm,
                                                                                         verbose=False)
    got = module.last_metrics["test"]
    d, ev = dm.data, dm.data.test
    h = torch.as_tensor(d.history_full[ev.users])
    hw = (h > 0).float()
    tok, w = dm.catalogue()
    with torch.no_grad():
        S = module.net(torch.as_tensor(d.user_tokens[ev.users]), torch.as_tensor(d.user_weights[ev.users]), h, hw,
                       tok, w).double().numpy()
    assert (module.net.repeat_offsets(h, hw) != 0).any()
    refs = [reference_metrics(S[r], list(ev.targets[r]), set(ev.exclude[r].tolist()), 10) for r in range(len(S))]
    for name, key in [("ndcg", "test/ndcg@10"), ("precision", "test/precision@10"), ("auc", "test/auc")]:
        assert got[key] == pytest.approx(np.nanmean([r[name] for r in refs]), rel=1e-6), key
