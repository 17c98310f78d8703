"""Serve an export over REST: `python scripts/serve.py model_path=PATH [port=8080 challenger_path=PATH ...]`
(Hydra; keys in rankers/serving/config.py; endpoints and deployment in README.md, section Serving)."""
import hydra
from omegaconf import DictConfig

from rankers.serving.app import serve
from rankers.serving.config import register

register()


@hydra.main(version_base="1.3", config_path="../configs", config_name="serve")
def main(cfg: DictConfig) -> None:
    serve(cfg)


if __name__ == "__main__":
    main()
