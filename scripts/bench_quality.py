"""MovieLens-100k quality beside the peers' table (../shared/bench).

    python scripts/bench_quality.py ../shared/data/ml-100k [--seeds 3] [--ablation-split u2]
    python ../shared/bench/ml100k_peers.py ../shared/data/ml-100k --seeds 3   # the peers, same session
"""
import argparse
import logging

from rankers.bench.quality import main

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="the ml-100k folder (never bundled with this project)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ablation-split", default=None, help="also run the ablation ladder on this split (u1..u5)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    main(a.data, a.seeds, a.ablation_split, a.threads)
