"""Train a ranker: `python scripts/train.py [group=option] [key=value ...]` (Hydra; -m for sweeps)."""
import hydra
from omegaconf import DictConfig

from rankers.training.train import monitored_test_key, train


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = train(cfg)
    return metrics[monitored_test_key(cfg)]  # the value a sweeper optimises


if __name__ == "__main__":
    main()
