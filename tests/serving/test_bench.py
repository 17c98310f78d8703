"""The benchmark's pieces at toy size (the real figures come from scripts/bench_serving.py)."""
import subprocess
import sys
from pathlib import Path

import numpy as np

from rankers.serving.bench import bench_inprocess, summarize

ROOT = Path(__file__).resolve().parents[2]


def test_summarize():
    s = summarize([0.001] * 99 + [0.1])
    assert s["n"] == 100 and abs(s["p50_ms"] - 1.0) < 1e-9 and s["max_ms"] == 100.0
    assert np.isnan(summarize([])["p99_ms"])


def test_bench_inprocess_reports_each_part(exports):
    r = bench_inprocess(exports["a"] / "model.ts", "u1", k=10, calls=20, warmup=2)
    assert set(r) == {"recommend", "user_vector", "scan", "scan_rowmajor", "topk"}
    assert r["recommend"]["n"] == 20 and r["recommend"]["p50_ms"] > 0


def test_bench_script_runs_in_process_part(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_serving.py"), "--n-items", "500",
                           "--n-users", "20", "--calls", "30", "--skip-http", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1 = a latency target missed on a busy machine
    assert "in-process recommend" in proc.stdout and "target in-process p99" in proc.stdout
