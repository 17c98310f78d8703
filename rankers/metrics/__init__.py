"""Ranking metrics (pure functions of pessimistic ranks) and their accumulation."""
from rankers.metrics.ranking import (auc, compute, map_at_k, mrr, ndcg_at_k, pad_ranks, precision_at_k,
                                     recall_at_k)

__all__ = ["auc", "compute", "map_at_k", "mrr", "ndcg_at_k", "pad_ranks", "precision_at_k", "recall_at_k"]
