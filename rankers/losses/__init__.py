"""Pairwise losses ℓ, pair weightings w, and the elastic-net objective (pure functions)."""
from rankers.losses.objective import PairwiseObjective, elastic_net, pairwise_loss
from rankers.losses.pair_loss import PAIR_LOSSES, hinge, logistic
from rankers.losses.weighting import WEIGHTINGS

__all__ = ["PairwiseObjective", "pairwise_loss", "elastic_net", "logistic", "hinge", "PAIR_LOSSES", "WEIGHTINGS"]
