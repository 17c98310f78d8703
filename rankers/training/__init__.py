"""Training: from a Hydra config to a fitted TwoTower, its test metrics and its export.

    batches.py     typed batches (PairBatch, EvalBatch): the datamodule -> LightningModule contract
    sampling.py    the pair set (Negatives) and the sampler that draws it
    datamodule.py  RankingDataModule (data=synthetic | files | movielens)
    module.py      RankerModule, the LightningModule around the TwoTower
    evaluation.py  full-catalogue metrics over the C++ core (rankers.retrieval)
    callbacks.py   FiniteGuard
    train.py       train(cfg) -> metrics; scripts/train.py only parses the config

Imports Lightning: nothing in rankers.model, rankers.artifact or rankers.serving imports this package.
"""
