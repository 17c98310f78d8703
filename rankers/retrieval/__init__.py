"""The compiled core's Python face: exact (or bf16-scanned) inner-product top-k, target
ranks and candidate scores, with per-query exclusions and sparse score offsets.
Validation, conversion and allocation happen here; ``rankers._C`` trusts its inputs."""
from rankers.retrieval.core import (available_kernels, kernel_name, rank_targets, score_candidates, to_bf16,
                                    topk)

__all__ = ["topk", "to_bf16", "score_candidates", "rank_targets", "kernel_name", "available_kernels"]
