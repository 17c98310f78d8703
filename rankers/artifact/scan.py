"""The catalogue scan of model.ts: which precision (``scan_plan``), the fp16 GEMM (``Fp16Scan``)
and a two-stage top-k over long score vectors (``topk_blocked``)."""
from typing import Tuple

import torch
from torch import nn

from rankers.artifact.schema import SCANS

SCAN_MIN_ITEMS = 16384  # below this, one exact pass over the catalogue is already cheap
FP16_MAX = 60000.0  # largest |item vector entry| stored in fp16 (its maximum is 65504)


def scan_plan(item_vectors: torch.Tensor, item_bias: torch.Tensor, scan: str = "auto") -> str:
    """The precision of recommend's scan for item vectors [N, D] and biases [N]: "auto" is
    fp16 from SCAN_MIN_ITEMS items on, where this torch has fbgemm and every entry fits
    fp16; fp32 otherwise."""
    if scan not in SCANS:
        raise ValueError(f"export scan must be 'auto', 'fp16' or 'fp32', got {scan!r}")
    if scan == "fp32":
        return scan
    n = item_vectors.shape[0]
    fbgemm = "fbgemm" in torch.backends.quantized.supported_engines
    fits = n == 0 or max(float(item_vectors.abs().max()), float(item_bias.abs().max())) <= FP16_MAX
    if scan == "fp16" and not (fbgemm and fits):
        raise ValueError("export scan='fp16' needs a torch with fbgemm (x86) and item vectors and biases within "
                         f"+-{FP16_MAX:g}; fbgemm={fbgemm}, fits={fits}")
    if scan == "auto":
        scan = "fp16" if n >= SCAN_MIN_ITEMS and fbgemm and fits else "fp32"
    return scan


class Fp16Scan(nn.Module):
    """Approximate scores of the whole catalogue from a half-precision copy of the Scorer's
    dense table (``Scorer.dense_items``: the bias a column, so the GEMM adds it rather than a
    second pass over the scores), accumulated in float32 (fbgemm's packed fp16 GEMM, in
    torch's CPU builds for x86; it splits the catalogue over torch's intra-op threads). Off
    by at most ``Recommender.scan_error``."""

    def __init__(self, dense_items: torch.Tensor):
        super().__init__()
        # A TorchScript-serialisable object: saved as float32 weights, packed again on load.
        self.packed = torch.ops.quantized.linear_prepack_fp16(dense_items.contiguous(), None)

    def forward(self, dense_query: torch.Tensor) -> torch.Tensor:
        """dense_query [1, D + 1] (``Scorer.dense_queries``) -> approximate scores [N]."""
        return torch.ops.quantized.linear_dynamic_fp16(dense_query, self.packed)[0]


def topk_blocked(s: torch.Tensor, m: int, groups: int = 16) -> Tuple[torch.Tensor, torch.Tensor]:
    """torch.topk(s, m) for a long s [n]: (values [m], indices [m]), best first.

    Seen as [groups, n / groups], each column's maximum bounds its entries: the m best
    entries lie in the m columns with the best maxima, so one vectorised max over the rows
    and two small top-ks replace the top-k over all n (about 2x faster at n = 50k-100k).
    Equal scores at the m-th place may resolve to a different, equally scored item.
    """
    n = s.shape[0]
    width = n // groups
    if width < 4 * m:
        top = torch.topk(s, m)
        return top.values, top.indices
    grid = s[:groups * width].view(groups, width)
    cols = torch.topk(grid.amax(0), m).indices                                   # [m]
    cand = grid.index_select(1, cols).reshape(-1)                                # [groups * m], row g = group g
    tail = n - groups * width  # the last n % groups entries are candidates as they are
    if tail > 0:
        cand = torch.cat([cand, s[groups * width:]])
    top = torch.topk(cand, m)
    pos = top.indices
    # position p < groups * m is entry (p // m) * width + cols[p % m]; the tail follows
    index = torch.div(pos, m, rounding_mode="floor") * width + cols.index_select(0, torch.remainder(pos, m))
    if tail > 0:
        index = torch.where(pos >= groups * m, pos - groups * m + groups * width, index)
    return top.values, index
