"""rankers: pairwise-weighted neural ranking for product recommendations.

Data flows: rankers.data (logs, features, splits, pair sampling) -> rankers.models
(plain nn.Module scorers + the LightningModule) trained with rankers.losses, evaluated
with rankers.metrics over the C++ core (rankers.retrieval), exported by rankers.export.
"""

__version__ = "0.1.0"
