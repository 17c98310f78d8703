// The compiled scoring core behind rankers.retrieval.
//
// The core trusts its inputs: rankers/retrieval/core.py checks shapes, dtypes and id
// ranges, sorts and dedups id lists and allocates the outputs. All matrices are
// row-major float32, all offsets and ids int64.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels.h"

namespace rankers {

// Blocking of one scan. Results never depend on it; tests shrink it to reach every edge.
struct Tiles {
  int64_t item_tile = 0;    // items packed per tile (0: about 16 KiB of packed items)
  int64_t query_block = 0;  // queries swept over each packed tile (0: default)
};

// Per-query sparse score offsets: for query q, item ids[j] (j in [off[q], off[q+1]))
// scores s + vals[j] instead of s (one float32 addition after the exact score).
// off: B + 1; ids sorted, unique per query, in [0, N), disjoint from the query's
// exclusions; vals finite. off == nullptr: no offsets.
struct Offsets {
  const int64_t* off = nullptr;
  const int64_t* ids = nullptr;
  const float* vals = nullptr;
};

// dispatch.cpp. "" is the process default: RANKERS_KERNEL if set, else the best
// kernel the CPU runs. Throws std::invalid_argument for unknown/unsupported names.
const KernelOps& kernel_by_name(const std::string& name);
std::vector<std::string> available_kernels();

// Exact top-k by inner product.
//   Q: B * d, X: N * d, 1 <= k <= N.
//   ex_off: B + 1, ex_ids: ex_off[B]; per query sorted, unique, in [0, N).
//   of: per-query score offsets (see Offsets): offset items compete with their adjusted score.
//   out_scores, out_ids: B * k, best first; slots past the non-excluded items get (-inf, -1).
void topk(const KernelOps& ops, const float* Q, int64_t B, const float* X, int64_t N, int64_t d,
          int64_t k, const int64_t* ex_off, const int64_t* ex_ids, Offsets of, float* out_scores,
          int64_t* out_ids, int num_threads, Tiles tiles);

// Approximate top-k: the scan reads Xb, a bfloat16 copy of X (N * d, the upper 16
// bits of each float32), and keeps the best `candidates` (clamped to [k, N]) per
// query; those are re-scored exactly from X and the best k returned. Scores are the
// exact float32 scores of the returned items (as topk); only recall is approximate.
// Offset items are always scored exactly (their recall is 1). Arguments and padding as for topk.
void topk_bf16(const KernelOps& ops, const float* Q, int64_t B, const float* X,
               const uint16_t* Xb, int64_t N, int64_t d, int64_t k, int64_t candidates,
               const int64_t* ex_off, const int64_t* ex_ids, Offsets of, float* out_scores,
               int64_t* out_ids, int num_threads, Tiles tiles);

// out[i] = bfloat16(X[i]), round to nearest even (NaN stays NaN), i < n.
void to_bf16(const float* X, int64_t n, uint16_t* out);

// Pessimistic 1-based rank of each target among the non-excluded items, by scores
// with the offsets applied (targets may have offsets too).
//   tg_off: B + 1, tg_ids: tg_off[B]; per query sorted, unique, in [0, N), no
//   target excluded. ex_off/ex_ids, of as for topk. out_ranks: tg_off[B], aligned with tg_ids.
void rank_targets(const KernelOps& ops, const float* Q, int64_t B, const float* X, int64_t N,
                  int64_t d, const int64_t* tg_off, const int64_t* tg_ids, const int64_t* ex_off,
                  const int64_t* ex_ids, Offsets of, int64_t* out_ranks, int num_threads,
                  Tiles tiles);

// out[c] = score(q, X[ids[c]]), c < C.   q: d, ids in [0, N).
void score_candidates(const KernelOps& ops, const float* q, const float* X, int64_t d,
                      const int64_t* ids, int64_t C, float* out);

}  // namespace rankers
