"""Resume: a run killed at any point continues from its last.ckpt to the metrics of the run that
was never killed; last.ckpt is the last epoch's (or step's), whatever validation did."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rankers.training.train import train
from tests.conftest import make_cfg

ROOT = Path(__file__).resolve().parents[2]
# make_cfg's test-size data, with checkpoints, deterministic; long enough to be killed mid-run
RUN = ["callbacks=default", "callbacks.early_stopping.patience=100", "trainer.deterministic=true",
       "export=false", "baseline=false", "trainer.max_epochs=12", "callbacks.last_checkpoint.every_n_train_steps=3"]
BASE = ["data.source.n_users=400", "data.source.n_items=150", "data.source.mean_views=20", "eval.ks=[10]",
        "trainer.enable_progress_bar=false"]


def _kill_once_checkpointed(run_dir: Path, at_step: int) -> int:
    """Start scripts/train.py with RUN, SIGKILL it once its last.ckpt has reached ``at_step``;
    returns the batches of its epoch that the checkpoint had trained."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), *BASE, *RUN, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if last.exists() and torch.load(last, weights_only=False)["global_step"] >= at_step:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists()
    state = torch.load(last, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    return state["batches"]  # of the epoch it was killed in


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_metrics(tmp_path):
    whole = train(make_cfg(tmp_path / "whole", RUN))
    done = _kill_once_checkpointed(tmp_path / "killed", at_step=10)
    assert done > 0  # killed inside an epoch: the resumed run starts at that epoch's next batch
    resumed = train(make_cfg(tmp_path / "resumed", RUN + [f"resume={tmp_path / 'killed'}"]))
    # it went on in the killed run's directory; the killed part's CSV log is kept beside the new one
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text()) == resumed
    assert len(list((tmp_path / "killed" / "csv").glob("metrics.until-resume-*.csv"))) == 1
    for key in ("test/ndcg@10", "test/auc", "val/ndcg@10_best", "fit_positives", "epochs"):
        assert resumed[key] == whole[key], (key, resumed[key], whole[key])


def test_last_ckpt_is_the_last_epochs_whatever_validation_did(tmp_path):
    # last.ckpt used to link to the best epoch's file: a run killed at epoch 143 resumed from epoch 14
    # (mode=min: the first epoch is all but sure to stay the "best", which last.ckpt must not follow)
    m = train(make_cfg(tmp_path, ["callbacks=default", "callbacks.early_stopping.patience=100",
                                  "callbacks.model_checkpoint.mode=min", "trainer.max_epochs=4", "export=false",
                                  "baseline=false"]))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert not last.is_symlink()
    assert torch.load(last, weights_only=False)["epoch"] == m["epochs"] == 4


@pytest.mark.parametrize("what,match", [
    ("missing", r"resume=.*missing: no such run directory or checkpoint file"),
    ("empty", r"resume=.*empty: no checkpoints/last.ckpt in that directory"),
    ("other", r"that run was trained with model.dim=16 \(now 32\).*resume with its own config"),
])
def test_resume_names_what_is_wrong_before_training(tmp_path, what, match):
    (tmp_path / "empty").mkdir()
    if what == "other":
        train(make_cfg(tmp_path / "other", ["callbacks=default", "trainer.max_epochs=1", "export=false",
                                            "baseline=false", "model.dim=16"]))
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        train(make_cfg(tmp_path / "new", ["callbacks=default", "model.dim=32", f"resume={tmp_path / what}"]))
    assert not (tmp_path / "new" / "checkpoints").exists()  # nothing trained
