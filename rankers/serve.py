"""Serve an export over REST: ``rankers serve model_path=PATH [port=8080 challenger_path=PATH ...]``,
also ``python -m rankers.serve`` and ``python scripts/serve.py`` (Hydra; keys in
rankers/serving/config.py; endpoints and deployment in README.md, section Serving)."""
import hydra
from omegaconf import DictConfig

from rankers.cli import check_searchpath
from rankers.serving.config import register

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="serve")
def _main(cfg: DictConfig) -> None:
    from rankers.serving.app import serve  # the serve extra: fastapi, uvicorn

    serve(cfg)


def main() -> None:
    check_searchpath()
    _main()


if __name__ == "__main__":
    main()
