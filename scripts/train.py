"""Train a ranker: `python scripts/train.py [group=option] [key=value ...]` (Hydra; -m for sweeps).
The same as `rankers train` (rankers/train.py)."""
from rankers.train import main

if __name__ == "__main__":
    main()
