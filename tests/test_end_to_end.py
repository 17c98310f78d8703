"""A tiny run end to end: train -> metrics.json -> export -> load in a process without rankers."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rankers import retrieval
from rankers.artifact.writer import export_checkpoint, load_checkpoint
from rankers.training.datamodule import user_inputs
from rankers.training.train import build, train
from tests.conftest import make_cfg

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter where importing rankers fails: production has torch only.
LOADER = textwrap.dedent("""
    import importlib.abc, json, sys
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "rankers" or name.startswith("rankers."):
                raise ImportError("rankers is not available in production")
    sys.meta_path.insert(0, Block())
    try:
        import rankers
        raise SystemExit("rankers should not be importable here")
    except ImportError:
        pass
    import torch
    m = torch.jit.load(sys.argv[1])
    req = json.loads(sys.argv[2])
    out = {"version": m.version, "recs": [], "scores": []}
    for r in req["recommend"]:
        out["recs"].append(m.recommend(r["user"], r["features"], r["k"], r["exclude"]))
    for r in req["score"]:
        out["scores"].append(m.score(r["user"], r["features"], r["items"]))
    print(json.dumps(out))
""")


def run_loader(model_path, request):
    proc = subprocess.run([sys.executable, "-c", LOADER, str(model_path), json.dumps(request)],
                          capture_output=True, text=True, cwd="/", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = make_cfg(out, ["callbacks=default", "trainer.max_epochs=4"])
    metrics = train(cfg)
    return cfg, out, metrics


def test_run_directory_holds_config_checkpoints_metrics_and_export(run):
    cfg, out, metrics = run
    assert (out / "config.yaml").is_file() and (out / "csv" / "metrics.csv").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("test/ndcg@10", "test/precision@10", "test/recall@10", "test/map@10", "test/auc",
                "popularity/ndcg@10", "popularity/auc", "fit_seconds"):
        assert key in on_disk and np.isfinite(on_disk[key]), key
    meta = json.loads((out / "export" / "metadata.json").read_text())
    assert meta["version"] and meta["created"] and meta["metrics"]["test/ndcg@10"] == on_disk["test/ndcg@10"]
    assert "country" in meta["user_features"] and "DE" in meta["user_features"]["country"]["values"]
    assert "brand" in meta["item_features"]
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # no half-written leftovers


def test_the_model_beats_popularity(run):
    _, _, m = run
    assert m["test/ndcg@10"] >= 1.2 * m["popularity/ndcg@10"], m
    assert m["test/auc"] > m["popularity/auc"]


def test_exported_model_serves_without_rankers_and_matches_python(run):
    cfg, out, _ = run
    dm, _ = build(cfg)
    data = dm.data
    net, bundle = load_checkpoint(next((out / "checkpoints").glob("epoch_*.ckpt")))
    # The export in the run dir is from the best checkpoint, the same weights as here.
    users = [str(u) for u in data.user_ids[:5]]
    rows = np.arange(5)
    with torch.no_grad():
        u = net.user_vectors(user_inputs(data.user_tokens[rows], data.user_weights[rows],
                                         data.history_full.padded(rows).astype(np.int64)))
        v, b = net.item_vectors(torch.as_tensor(data.item_tokens), torch.as_tensor(data.item_weights),
                                torch.arange(data.n_items))
    q, items = net.scorer.dense_queries(u).numpy(), net.scorer.dense_items(v, b).numpy()
    excl = [[str(data.item_ids[0]), str(data.item_ids[3])]] + [[]] * 4
    ex_idx = [np.array([0, 3])] + [np.zeros(0, np.int64)] * 4
    ref_scores, ref_idx = retrieval.topk(q, items, 10, exclude=ex_idx)

    one_country = {"country": ["DE"]}
    request = {
        "recommend": [{"user": users[i], "features": {}, "k": 10, "exclude": excl[i]} for i in range(5)]
        + [{"user": "somebody-new", "features": one_country, "k": 5, "exclude": []},
           {"user": "somebody-new", "features": {}, "k": 5, "exclude": []}],
        "score": [{"user": users[0], "features": {}, "items": ["i1", "i2", "i5"]},
                  {"user": "somebody-new", "features": one_country, "items": ["i1", "i2"]}],
    }
    got = run_loader(out / "export" / "model.ts", request)
    for i in range(5):
        ids, scores = got["recs"][i]
        assert ids == [str(data.item_ids[j]) for j in ref_idx[i]], f"user {users[i]}"
        np.testing.assert_allclose(scores, ref_scores[i], rtol=1e-4, atol=1e-4)
    assert not set(excl[0]) & set(got["recs"][0][0])
    cold_ids, cold_scores = got["recs"][5]
    assert len(cold_ids) == 5 and cold_scores == sorted(cold_scores, reverse=True)
    assert got["recs"][5] != got["recs"][6]  # the feature value changes the cold-start ranking
    # score agrees with recommend
    rec_ids, rec_scores = got["recs"][0]
    s = run_loader(out / "export" / "model.ts", {"recommend": [], "score": [
        {"user": users[0], "features": {}, "items": rec_ids[:3]}]})["scores"][0]
    np.testing.assert_allclose(s, rec_scores[:3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["scores"][1], run_loader(out / "export" / "model.ts", {"recommend": [], "score": [
        {"user": "other-new", "features": one_country, "items": ["i1", "i2"]}]})["scores"][0], rtol=1e-6)


def test_scripts_export_rewrites_from_a_checkpoint(run, tmp_path):
    _, out, _ = run
    target = tmp_path / "exported"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), str(out / "checkpoints" / "last.ckpt"),
                           str(target)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta1 = json.loads((target / "metadata.json").read_text())
    export_checkpoint(out / "checkpoints" / "last.ckpt", target)  # replaces atomically
    meta2 = json.loads((target / "metadata.json").read_text())
    assert meta1["version"] != meta2["version"] and (target / "model.ts").is_file()
    assert meta2["config"]["seed"] == 0 and "test/ndcg@10" in meta2["metrics"]



def test_a_run_without_validation_can_be_exported_again(tmp_path):
    # experiment=ml100k trains without a validation split; its checkpoint must still re-export.
    out = tmp_path / "run"
    train(make_cfg(out, ["callbacks=default", "data.val_split=null", "trainer.max_epochs=2", "export=false"]))
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), str(last), str(tmp_path / "e")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = torch.jit.load(str(tmp_path / "e" / "model.ts"))
    assert len(m.recommend("u1", {}, 5, [])[0]) == 5
