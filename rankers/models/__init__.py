"""Scorers (plain, scriptable nn.Modules) and the LightningModule that trains them."""
from rankers.models.two_tower import ItemTower, TwoTower, UserTower

__all__ = ["RankerModule", "TwoTower", "UserTower", "ItemTower"]


def __getattr__(name: str):
    # The LightningModule imports Lightning (seconds); export and serving use the scorers
    # alone, so it loads on first use.
    if name == "RankerModule":
        from rankers.models.module import RankerModule
        return RankerModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
