"""Scorers (plain, scriptable nn.Modules) and the LightningModule that trains them."""
from rankers.models.module import RankerModule
from rankers.models.two_tower import ItemTower, TwoTower, UserTower

__all__ = ["RankerModule", "TwoTower", "UserTower", "ItemTower"]
