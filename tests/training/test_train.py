"""Training behaviour: every loss/weighting runs, seeds reproduce, divergence is caught, sweeps write results."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rankers.data.errors import DataError
from rankers.training.train import train
from tests.conftest import make_cfg

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("pair_loss", ["logistic", "hinge"])
@pytest.mark.parametrize("weighting", ["uniform", "graded", "lambda", "warp"])
def test_every_objective_trains(cfg_factory, pair_loss, weighting):
    m = train(cfg_factory(f"loss.pair_loss={pair_loss}", f"loss.weighting={weighting}", "trainer.max_epochs=2",
                          "export=false", "loss.l2=1e-6"))
    assert m["test/ndcg@10"] > m["popularity/ndcg@10"], m


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path):
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


def test_a_monitor_that_eval_ks_does_not_give_fails_before_training(cfg_factory, tmp_path):
    with pytest.raises(ValueError, match=r"eval.monitor must be val/<metric> .* eval.ks=\[5\] gives .*ndcg@5.*"
                                         r"got 'val/ndcg@10'"):
        train(cfg_factory("eval.ks=[5]"))
    with pytest.raises(ValueError, match=r"got 'test/auc'"):
        train(cfg_factory("eval.monitor=test/auc"))
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_the_monitored_metric_is_a_config_key(tmp_path):
    # eval.ks without 10 used to break training (val/ndcg@10 was hard-coded); now every piece
    # (checkpoint, early stopping, the floor, the sweeper's value) follows eval.monitor.
    m = train(make_cfg(tmp_path, ["eval.ks=[5]", "eval.monitor=val/recall@5", "callbacks=default",
                                  "trainer.max_epochs=2", "export=false", "min_test_metric=0.0"]))
    assert "test/ndcg@5" in m and "test/ndcg@10" not in m
    assert "val/recall@5_best" in m
    ckpt = torch.load(next((tmp_path / "checkpoints").glob("epoch_*.ckpt")), weights_only=False)
    assert any("val/recall@5" in str(k) for k in ckpt["callbacks"])
    with pytest.raises(RuntimeError, match=r"test/recall@5 .* is below min_test_metric 1.01"):
        train(make_cfg(tmp_path / "again", ["eval.ks=[5]", "eval.monitor=val/recall@5", "trainer.max_epochs=1",
                                             "export=false", "min_test_metric=1.01"]))


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


    m = train(make_cfg(tmp_path, ["model.score.repeat=true", negatives, "trainer.max_epochs=2"]))
    assert m["test/ndcg@10"] > m["popularity/ndcg@10"], m
    assert torch.jit.load(str(tmp_path / "export" / "model.ts")).scorer.repeat < 0.0


@pytest.mark.parametrize("terms", [["model.score.repeat=true"], ["model.score.popularity_prior=true"]])
def test_evaluation_ranks_by_the_models_own_scores(tmp_path, terms):
    # The metrics of a model with extra score terms equal a dense brute-force computation
    # from the model's own forward.
    import numpy as np
    import pytorch_lightning as pl

    from rankers.training.datamodule import user_inputs
    from rankers.training.train import build
    from tests.metrics.test_ranking import reference_metrics

    cfg = make_cfg(tmp_path, [*terms, "eval.batch_size=50"])
    dm, module = build(cfg)
    with torch.no_grad():
        module.net.scorer.repeat.fill_(-0.8)
        module.net.scorer.popularity_weight.fill_(0.6)
    pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False).test(module, datamodule=dm,
                                                                                         verbose=False)
    got = module.last_metrics["test"]
    d, ev = dm.data, dm.data.test
    users = user_inputs(d.user_tokens[ev.users], d.user_weights[ev.users],
                        d.history_full.padded(ev.users).astype(np.int64))
    tok, w = dm.catalogue()
    with torch.no_grad():
        S = module.net(users, tok, w, torch.arange(d.n_items)).double().numpy()
        plain = module.net.user_vectors(users) @ module.net.item_tower(tok, w)[0].T + module.net.item_tower(tok, w)[1]
    assert not np.allclose(S, plain.double().numpy())  # the term moves scores
    refs = [reference_metrics(S[r], list(ev.targets.row(r)), set(ev.exclude.row(r).tolist()), 10)
            for r in range(len(S))]
    for name, key in [("ndcg", "test/ndcg@10"), ("precision", "test/precision@10"), ("auc", "test/auc")]:
        assert got[key] == pytest.approx(np.nanmean([r[name] for r in refs]), rel=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["experiment=shop", "trainer.max_epochs=2", "loss.negatives.shared=32"]],
                         ids=["dense", "shop-sparse-grads"])
def test_ddp_trains_two_processes_and_rank_zero_writes_the_run(tmp_path, extra):
    # Lightning's DDP on CPU (gloo): scripts/train.py is started again for rank 1 in the same run
    # directory; both step through the same batches, each with half the rows. experiment=shop has
    # sparse embedding gradients, which gloo all-reduces as sparse tensors.
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "trainer=ddp", "data.source.n_users=300",
           "data.source.n_items=100", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
           f"hydra.run.dir={tmp_path}", "data.batch_size=128", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1" in logs and "MEMBER: 2/2" in logs
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["test/ndcg@10"] > m["popularity/ndcg@10"] and m["epochs"] == 2
    assert (tmp_path / "export" / "model.ts").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert not list(tmp_path.glob(".hydra_rank*")) and (tmp_path / "train_ddp_process_1.log").is_file()


@pytest.mark.parametrize("preset", ["catalogue", "ml100k_fast"])
def test_presets_with_several_positives_per_row_train_on_every_positive(cfg_factory, preset):
    # catalogue: shared negatives, sparse tables, Adagrad; ml100k_fast: all pairs, Adam (both: the C++ pair pass)
    cfg = cfg_factory(f"experiment={preset}", "trainer.max_epochs=2", "export=false", "eval.max_users=null",
                      "loss.negatives.shared=64")
    assert cfg.loss.negatives.positives_per_row == 4
    m = train(cfg)
    assert math.isfinite(m["test/ndcg@10"]) and m["test/ndcg@10"] > m["popularity/ndcg@10"] * 0.5
    assert m["epochs"] == 2 and m["fit_positives"] > 0 and m["fit_positives"] % 2 == 0  # every positive, each epoch
    assert 0 < m["train_seconds"] < m["fit_seconds"]  # the training epochs, without validation and checkpoints


def _log(path, rows):
    path.write_text("user_id,item_id,event,timestamp,weight\n" + "".join(f"{r}\n" for r in rows))
    return str(path)


def _files(tmp_path, train_rows, test_rows):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from tests.conftest import CONFIGS

    ov = ["data=files", f"data.train={_log(tmp_path / 'train.csv', train_rows)}",
          f"data.test={_log(tmp_path / 'test.csv', test_rows)}", "data.val_split=null", "export=false",
          "trainer.max_epochs=1", "eval.ks=[10]", "trainer.enable_progress_bar=false", "callbacks=none"]
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose(config_name="train", overrides=ov)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    return cfg


def test_nothing_to_learn_or_to_evaluate_is_an_error_before_training(cfg_factory, tmp_path):
    train_rows = [f"u{u},i{(u * 7 + k) % 30},{'cart' if k % 2 else 'view'},{k},1" for u in range(40) for k in range(8)]
    test_rows = [f"u{u},i{(u * 3 + 29) % 30},purchase,100,1" for u in range(40)]
    zero = [r[:-1] + "0" for r in train_rows]
    with pytest.raises(DataError, match="no training positive .* has a weight > 0.*column 'weight' all 0"):
        train(_files(tmp_path, zero, test_rows))
    # every test positive was already that user's training positive: an error now, not a KeyError later
    seen = [r.replace(",view,", ",cart,") for r in train_rows]
    again = [f"u{u},i{(u * 7 + 1) % 30},purchase,100,1" for u in range(40)]
    with pytest.raises(DataError, match="the test split has no user with a held-out positive"):
        train(_files(tmp_path, seen, again))
    with pytest.raises(ValueError, match="trainer.max_epochs=0 trains nothing"):
        train(cfg_factory("trainer.max_epochs=0"))
    with pytest.raises(ValueError, match=r"data.batch_size must be an integer >= 1, got 0"):
        train(cfg_factory("data.batch_size=0"))  # was a ZeroDivisionError
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "export").exists()
