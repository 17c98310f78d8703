"""Quality and time to quality on MovieLens-100k beside the peers, in one run:

    python scripts/bench_quality.py ../shared/data/ml-100k --seeds 3 --peers-python <peers venv>/bin/python

Prints the presets' and the peers' tables on ua.test, the time-to-quality table (validation
NDCG@10 against training seconds, on a split carved from ua.base) and the plot's path. The
bench lives in benchmarks/quality.py (benchmark-only peers never enter the install)."""
import runpy
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"

if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    runpy.run_path(str(BENCH / "quality.py"), run_name="__main__")
