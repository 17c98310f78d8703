"""Data: logs, sources, feature tables and vocabularies, splits; everything in index space
(``prepare`` -> RankingData). No torch modules here: tokenisation is rankers.model.tokenizer,
training batches are rankers.training."""
from rankers.data.errors import DataError

__all__ = ["DataError"]
