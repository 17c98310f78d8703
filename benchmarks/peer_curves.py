"""The peers' time-to-quality curves on a split written by benchmarks/quality.py.

    PEERS_PYTHON benchmarks/peer_curves.py SPLIT.npz [--seeds 3] [--epochs 30] [--threads 2]

Run by quality.py with the interpreter that has LightFM (a benchmark-only peer, never a
dependency of rankers; see ../shared/bench/README.md for its install). Prints one JSON object:
{"lightfm-warp": [[[epoch, seconds, ndcg], ...] per seed], "ease": [[[1, seconds, ndcg]]]}.
LightFM WARP as in the shared bench (64 factors, learning rate 0.05), one epoch at a time with
``fit_partial``; seconds are the fits alone, the scoring after each epoch is not counted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curves import ease_scores, load_split, ndcg_at_k  # noqa: E402


def lightfm_curve(split, seed: int, epochs: int, threads: int):
    import scipy.sparse as sp
    from lightfm import LightFM

    nu, ni = int(split["n_users"]), int(split["n_items"])
    train = sp.coo_matrix((np.ones(len(split["train_user"]), np.float32),
                           (split["train_user"], split["train_item"])), shape=(nu, ni)).tocsr()
    model = LightFM(no_components=64, loss="warp", learning_rate=0.05, random_state=seed)
    uu = np.repeat(np.arange(nu, dtype=np.int32), ni)
    ii = np.tile(np.arange(ni, dtype=np.int32), nu)
    curve, seconds = [], 0.0
    for e in range(1, epochs + 1):
        t = time.perf_counter()
        model.fit_partial(train, epochs=1, num_threads=threads)
        seconds += time.perf_counter() - t
        s = model.predict(uu, ii, num_threads=threads).reshape(nu, ni)
        curve.append([e, seconds, ndcg_at_k(s, split)])
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("split")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    split = load_split(a.split)
    out = {"lightfm-warp": [lightfm_curve(split, s, a.epochs, a.threads) for s in range(a.seeds)]}
    t = time.perf_counter()
    s = ease_scores(split)
    out["ease"] = [[[1, time.perf_counter() - t, ndcg_at_k(s, split)]]]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
