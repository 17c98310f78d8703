"""The offline gate (rankers promote): both exports on the same fresh held-out events, the
paired difference with its 95% CI, the symlink repointed only on acceptance, a report either
way, and held-out logs that overlap a model's training window refused."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from rankers.artifact.writer import export, load_checkpoint
from rankers.promote import main as promote_main
from rankers.production.gate import LeakageError, evaluate
from rankers.serving.events import COLUMNS
from rankers.training.train import train
from tests.conftest import make_cfg

T0, CUT = 1_700_000_000, 1_700_800_000


def write_shop(root, n_users=300, n_items=60, events=9000, seed=0):
    """A shop with a taste to learn: user u buys items i with i % 6 == u % 6 and only views the
    rest. train.csv holds the events before CUT, heldout.csv (the service's event-log layout)
    those after."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, n_users, events)
    liked = rng.random(events) < 0.6
    i = np.where(liked, (u % 6) + 6 * rng.integers(0, n_items // 6, events), rng.integers(0, n_items, events))
    ts = T0 + rng.uniform(0, 1e6, events)
    df = pd.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i],
                       "event": np.where(i % 6 == u % 6, "purchase", "view"), "timestamp": ts})
    root.mkdir(parents=True, exist_ok=True)
    df[df.timestamp < CUT].to_csv(root / "train.csv", index=False)
    held = df[df.timestamp >= CUT].assign(variant="champion", model_version="", request_id="")
    held[list(COLUMNS)].to_csv(root / "heldout.csv", index=False)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """champion: trained on train.csv; same: its weights exported again (a different version);
    random: its exports with fresh random weights (same catalogue and window)."""
    root = tmp_path_factory.mktemp("gate")
    shop = write_shop(root / "shop")
    cfg = make_cfg(root / "champion", ["data=files", f"data.train={shop / 'train.csv'}", "data.test=null",
                                       "data.val_split=null", "trainer.max_epochs=5", "baseline=false",
                                       "model.dim=16"])
    train(cfg)
    champion = root / "champion" / "export"
    net, bundle = load_checkpoint(champion / "checkpoint.pt")
    metrics = json.loads((champion / "metadata.json").read_text())["metrics"]
    export(net, bundle, root / "same", metrics=metrics, pt2=False)
    torch.manual_seed(1)
    for p in net.parameters():
        torch.nn.init.normal_(p, 0.0, 0.05)
    export(net, bundle, root / "random", metrics=metrics, pt2=False)
    deploy = root / "deploy"
    deploy.mkdir()
    return {"shop": shop, "champion": champion, "same": root / "same", "random": root / "random", "deploy": deploy}


def link_to(models, name="current"):
    link = models["deploy"] / name
    if link.is_symlink():
        link.unlink()
    os.symlink(models["champion"], link)
    return link


def run(*args):
    with pytest.raises(SystemExit) as e:
        promote_main([str(a) for a in args])
    return e.value.code


def test_a_worse_challenger_is_refused_and_the_link_stays(models, tmp_path, capsys):
    link = link_to(models)
    code = run(models["random"], "--champion", link, "--data", models["shop"] / "heldout.csv",
               "--report", tmp_path / "r.json")
    out = capsys.readouterr().out
    assert code == 1 and "REFUSED" in out
    assert os.path.realpath(link) == os.path.realpath(models["champion"])
    report = json.loads((tmp_path / "r.json").read_text())
    assert not report["accepted"] and report["difference_ci"][1] < 0
    assert report["champion"]["ndcg"] > report["challenger"]["ndcg"] + 0.05
    assert report["users"] > 100


def test_an_equal_challenger_is_accepted_and_deployed_atomically(models, capsys):
    link = link_to(models)
    code = run(models["same"], "--champion", link, "--data", models["shop"] / "heldout.csv")
    out = capsys.readouterr().out
    assert code == 0 and "ACCEPTED" in out and "deployed" in out
    assert os.path.realpath(link) == os.path.realpath(models["same"])
    reports = list((models["deploy"] / "gate-reports").glob("*.json"))
    assert reports and json.loads(reports[-1].read_text())["accepted"]
    assert not [p for p in models["deploy"].iterdir() if p.name.startswith(".")]  # no temp link left
    # a dry run decides without repointing
    link = link_to(models)
    assert run(models["same"], "--champion", link, "--data", models["shop"] / "heldout.csv", "--dry-run") == 0
    assert os.path.realpath(link) == os.path.realpath(models["champion"])


def test_held_out_logs_inside_the_training_window_are_refused(models, capsys):
    link = link_to(models)
    code = run(models["same"], "--champion", link, "--data", models["shop"] / "train.csv")
    err = capsys.readouterr().err
    assert code == 2 and "are not after the last event" in err and "--since" in err
    assert os.path.realpath(link) == os.path.realpath(models["champion"])
    with pytest.raises(LeakageError):
        evaluate(models["same"], models["champion"], models["shop"] / "train.csv")
    # --since keeps only the later events
    last = json.loads((models["same"] / "metadata.json").read_text())["metrics"]["data_last_timestamp"]
    r = evaluate(models["same"], models["champion"], [models["shop"] / "train.csv", models["shop"] / "heldout.csv"],
                 since=last + 1)
    assert r.accepted and r.users > 100


def test_bad_requests_exit_2_with_a_message(models, tmp_path, capsys):
    link = link_to(models)
    held = models["shop"] / "heldout.csv"
    assert run(models["same"], "--champion", models["champion"], "--data", held) == 2
    assert "is a directory, not a symlink" in capsys.readouterr().err
    assert run(tmp_path, "--champion", link, "--data", held) == 2
    assert "not an export directory" in capsys.readouterr().err
    assert run(models["champion"], "--champion", link, "--data", held) == 2
    assert "already the champion" in capsys.readouterr().err
    assert run(models["same"], "--champion", link, "--data", tmp_path / "none.csv") == 2
    assert "file not found" in capsys.readouterr().err
    torn = tmp_path / "torn.csv"
    torn.write_text(held.read_text() + "u1,i2,purch")  # a crash mid-write: read up to the last full line
    assert run(models["same"], "--champion", link, "--data", torn, "--dry-run") == 0
