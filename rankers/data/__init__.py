"""Logs, feature vocabularies, splits, pair sampling and the LightningDataModule."""
from rankers.data.errors import DataError

__all__ = ["DataError"]
