"""Train a ranker: ``rankers train [group=option] [key=value ...]`` (Hydra; ``-m`` for sweeps),
also ``python -m rankers.train`` and ``python scripts/train.py`` from a checkout.

The configs are the package's (``rankers/conf``, found from any working directory); add your
own directory of them with ``hydra.searchpath=[file://my_configs]`` (then
``experiment=my_preset`` reads ``my_configs/experiment/my_preset.yaml``)."""
import hydra
from omegaconf import DictConfig

from rankers.cli import check_searchpath
from rankers.training.train import monitored_test_key, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def _main(cfg: DictConfig) -> float:
    metrics = train(cfg)
    return metrics[monitored_test_key(cfg)]  # the value a sweeper optimises


def main() -> None:
    check_searchpath()
    _main()


if __name__ == "__main__":
    main()
