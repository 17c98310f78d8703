"""Train a ranker: `python scripts/train.py [group=option] [key=value ...]` (Hydra; -m for sweeps)."""
import hydra
from omegaconf import DictConfig

from rankers.train import train


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = train(cfg)
    return metrics["test/ndcg@10"]  # the value a sweeper optimises


if __name__ == "__main__":
    main()
