"""The benchmarks' pieces at toy size (the real figures come from python benchmarks/serving.py)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.load import bench_inprocess, summarize, time_interleaved
from rankers.artifact.testing import random_export

ROOT = Path(__file__).resolve().parents[2]


def test_summarize():
    s = summarize([0.001] * 99 + [0.1])
    assert s["n"] == 100 and abs(s["p50_ms"] - 1.0) < 1e-9 and s["max_ms"] == 100.0
    assert np.isnan(summarize([])["p99_ms"])


def test_bench_inprocess_reports_each_part(exports):
    r = bench_inprocess(exports["a"] / "model.ts", "u1", k=10, calls=20, warmup=2)
    assert set(r) == {"recommend", "user_vector", "scan_fp32", "topk", "topk_blocked"}  # small: an fp32 scan
    assert r["recommend"]["n"] == 20 and r["recommend"]["p50_ms"] > 0


def test_bench_inprocess_times_the_baseline_and_the_fp16_scan(tmp_path):
    fp16 = random_export(tmp_path / "fp16", n_items=400, n_users=5, dim=8, pt2=False, scan="fp16")
    fp32 = random_export(tmp_path / "fp32", n_items=400, n_users=5, dim=8, pt2=False, scan="fp32")
    r = bench_inprocess(fp16 / "model.ts", "u1", k=10, calls=20, warmup=2, baseline_ts=fp32 / "model.ts")
    assert {"recommend_baseline", "scan_fp16"} <= set(r)
    assert r["recommend_baseline"]["n"] == r["recommend"]["n"] == 20


def test_time_interleaved_gives_each_function_its_calls():
    counts = {"a": 0, "b": 0}

    def bump(name):
        counts[name] += 1
    r = time_interleaved({"a": lambda: bump("a"), "b": lambda: bump("b")}, calls=23, warmup=2, rounds=5)
    assert counts == {"a": 25, "b": 25} and r["a"]["n"] == r["b"]["n"] == 23


def test_bench_script_runs_in_process_part(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "serving.py"), "--n-items", "500",
                           "--n-users", "20", "--calls", "30", "--skip-http", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1 = a latency target missed on a busy machine
    assert "in-process recommend" in proc.stdout and "target in-process p99" in proc.stdout


def test_scoring_bench_prints_every_row(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scoring.py"), "--n", "3000", "--d", "8",
                           "--k", "10", "--batches", "1,4", "--repeats", "1", "--candidates", "50"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("rankers.retrieval.topk ") >= 2 and "score_candidates C=50" in proc.stdout
    assert proc.stdout.count("rankers.retrieval.topk, 1 thread ") == 2  # beside the 2-thread run, per B


def _scale(tmp_path, *extra):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--users", "1500", "--items", "400",
                           "--views", "12", "--cache", str(tmp_path / "cache"), "--eval-users", "300",
                           "--json", str(tmp_path / "scale.json"), *extra],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)


@pytest.mark.slow
def test_scale_bench_prints_every_stage_and_reuses_the_world(tmp_path):
    proc = _scale(tmp_path, "--no-als")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("generate", "read + encode", "training epoch", "evaluation", "export", "load model.ts",
                  "recommend (k=100)"):
        assert f"  {stage} " in proc.stdout, stage
    r = json.loads((tmp_path / "scale.json").read_text())
    assert r["ours"]["ndcg@10"] > 0 and r["ours"]["ndcg@10_se"] > 0 and r["recommend"]["p99_ms"] > 0
    assert all(s["peak_rss_mb"] > 0 for s in r["stages"]) and "reused" not in r["stages"][0]["note"]
    again = _scale(tmp_path, "--no-als")
    assert again.returncode == 0 and "(reused" in again.stdout  # the Parquet world is written once


@pytest.mark.slow
def test_scale_bench_tunes_and_scores_als_beside_us(tmp_path):
    pytest.importorskip("implicit")  # a bench-only peer, not an install requirement
    proc = _scale(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((tmp_path / "scale.json").read_text())["als"]
    assert len(r["grid"]) == 6 and r["params"] in [{k: g[k] for k in r["params"]} for g in r["grid"]]
    assert r["ndcg@10"] > 0 and "implicit ALS, tuned" in proc.stdout


def test_ndcg_of_a_score_matrix_equals_the_per_user_definition():
    from benchmarks.curves import ndcg_at_k

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(30, 50))
    train = {(u, i) for u in range(30) for i in rng.choice(50, 8, replace=False)}
    val = {(u, i) for u in range(0, 30, 2) for i in rng.choice(50, 1 + u % 13, replace=False)} - train
    tu, ti = map(np.array, zip(*sorted(train)))
    vu, vi = map(np.array, zip(*sorted(val)))
    split = dict(n_users=30, n_items=50, train_user=tu, train_item=ti, val_user=vu, val_item=vi)
    want = []
    for u in sorted(set(vu)):
        s = scores[u].copy()
        s[[i for (uu, i) in train if uu == u]] = -np.inf
        top = np.argsort(-s, kind="stable")[:10]
        pos = {i for (uu, i) in val if uu == u}
        dcg = sum(1 / np.log2(r + 2) for r, i in enumerate(top) if i in pos)
        want.append(dcg / sum(1 / np.log2(r + 2) for r in range(min(len(pos), 10))))
    assert ndcg_at_k(scores, split) == pytest.approx(np.mean(want), rel=1e-12)
    assert 0 < np.mean(want) < 1


def test_curve_helpers():
    from benchmarks.curves import mean_curve, seconds_to_reach

    c = mean_curve([[[1, 1.0, 0.1], [2, 2.0, 0.3]], [[1, 3.0, 0.2], [2, 4.0, 0.5], [3, 5.0, 0.6]]])
    assert c == [(1, 2.0, pytest.approx(0.15)), (2, 3.0, pytest.approx(0.4))]
    assert seconds_to_reach(c, 0.2) == 3.0 and seconds_to_reach(c, 0.9) is None


def test_time_to_quality_callback_and_plot_on_generated_movielens(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import quality
    from curves import load_split
    from tests.data.test_files_and_movielens import write_ml100k

    d = write_ml100k(tmp_path / "ml", n_users=40, n_items=60)
    out, split = tmp_path / "curve.json", tmp_path / "split.npz"
    cb = ["+callbacks.time_to_quality._target_=quality.TimeToQuality", f"+callbacks.time_to_quality.out={out}",
          f"+callbacks.time_to_quality.split_out={split}"]
    quality.run(str(d), ["experiment=ml100k", "trainer.max_epochs=3", "data.split=ua", "callbacks.early_stopping=null",
                         "data.val_split={kind: leave_last_n, n: 3}", "model.dim=8", *cb], 0)
    curve = json.loads(out.read_text())
    assert [c[0] for c in curve] == [1, 2, 3]
    assert all(0 < a[1] < b[1] for a, b in zip(curve, curve[1:]))  # training seconds add up
    assert all(0 <= c[2] <= 1 for c in curve)
    s = load_split(str(split))
    assert int(s["n_items"]) == 60 and len(s["val_user"]) > 0 and len(s["train_user"]) > 0
    # validation positives are not training positives: they were carved out of the training file
    assert not set(zip(s["val_user"], s["val_item"])) & set(zip(s["train_user"], s["train_item"]))
    png = tmp_path / "plot" / "ttq.png"
    quality.plot({"rankers": curve, "EASE": [[1, 0.5, 0.2]]}, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(png.parent.glob("*.tmp-*"))


def test_catalogue_bench_prints_both_objectives_and_the_ratios(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "catalogue.py"), "--users", "300", "--items",
                           "200", "400", "--all-pairs-up-to", "200"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "     200 sampled" in out and "     200 all pairs" in out and "     400 sampled" in out
    assert "     400 all pairs" not in out  # above --all-pairs-up-to
    assert "200 items: sampled reaches" in out and "sampled rows/s at 400 items:" in out


def test_bench_quality_entry_point_runs_the_quality_bench(tmp_path):
    """scripts/bench_quality.py (the issue's command) is benchmarks/quality.py: its options, and a
    missing data folder is the bench's own error."""
    script = ROOT / "scripts" / "bench_quality.py"
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "--peers-python" in proc.stdout and "time to quality" in proc.stdout.lower()
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "no-such-ml-100k"), "--seeds", "1", "--no-curves"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "no-such-ml-100k: no such folder" in bad.stderr
