// Interface between the drivers (scoring.cpp: what to keep, threads) and the
// per-ISA kernels (kernel_*.cpp: how scores are computed).
//
// Only plain structs and function pointers cross this line. The SIMD translation
// units compile their own functions with __attribute__((target(...))); if they
// instantiated inline/template code shared with other units (std::sort, ...), the
// linker could keep their AVX-512 copy for everyone and crash older CPUs.
#pragma once

#include <cstdint>

namespace rankers {

// Items are scored 16 at a time, one per SIMD lane, from packed (transposed)
// tiles: ceil(n / 16) * 16 * d floats, 64-byte aligned. The layout inside a tile is
// private to each kernel (pack_rows and scan_tile of one kernel go together).
constexpr int64_t kPanel = 16;

// THE score. Every kernel accumulates in this exact order, so all kernels, tile
// sizes and thread counts agree bit for bit:
//   s = +0.0f;  for j in [0, d): s = fmaf(q[j], x[j], s)
// (one rounding per step; fmaf is a single fused operation on every path).

// Receives the lanes that survive the per-query filter.
struct ScanSink {
  // Per query (global index): a lane is handed to emit unless score < thr[q]
  // (comparison false on NaN, so NaN scores and a NaN threshold always pass).
  // emit refines with the exact order and may lower/raise thr[q].
  float* thr;
  void* ctx;
  // scores: 16 scores of items first..first+15; bit l of mask = lane l passed.
  // Called with increasing `first` per query within one scan.
  void (*emit)(void* ctx, int64_t q, int64_t first, const float* scores, uint32_t mask);
};

// Rank counting: per query q, ascending thresholds thr[off[q] .. off[q+1]) (numbers,
// no NaN) and their counters: cnt[o] += #{items: score >= thr[o]} (ordered compare,
// so NaN scores never count; -0 == +0).
struct CountJob {
  const int64_t* off;
  const float* thr;
  int64_t* cnt;
};

struct KernelOps {
  const char* name;
  // Packs rows first..first+n-1 of X (row-major, rows of d) into the tile P.
  // Rows up to `limit` (exclusive) come next and may be prefetched.
  void (*pack_rows)(const float* X, int64_t d, int64_t first, int64_t n, int64_t limit, float* P);
  // As pack_rows, from bfloat16 rows (uint16: the upper 16 bits of a float32) of Xb,
  // widened exactly to float32. May be nullptr: the driver then widens a tile of
  // rows itself and calls pack_rows on them.
  void (*pack_rows_bf16)(const uint16_t* Xb, int64_t d, int64_t first, int64_t n, int64_t limit,
                         float* P);
  // Scores queries q0..q1-1 of Q (row-major, rows of d) against the n items packed
  // at P by pack_rows (global indices first..first+n-1); feeds survivors to sink.
  void (*scan_tile)(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                    int64_t first, int64_t n, const ScanSink* sink);
  // One query q straight from row-major items: rows first..first+n-1 of X (rows up
  // to `limit` may be prefetched), no packed tile (a single query would use each tile
  // once, so packing it is pure overhead). Same scores and sink calls as scan_tile.
  // May be nullptr: the driver then packs tiles.
  void (*scan_rows)(const float* Q, int64_t q, int64_t d, const float* X, int64_t first,
                    int64_t n, int64_t limit, const ScanSink* sink);
  // As scan_rows, from bfloat16 rows (see pack_rows_bf16). May be nullptr.
  void (*scan_rows_bf16)(const float* Q, int64_t q, int64_t d, const uint16_t* Xb, int64_t first,
                         int64_t n, int64_t limit, const ScanSink* sink);
  // Same sweep as scan_tile, counting into job instead of filtering.
  void (*count_tile)(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                     int64_t n, const CountJob* job);
  // out[c] = score(q, X[ids[c]]) for c < n. scratch: kRowsScratch * d floats, 64-byte aligned.
  void (*score_rows)(const float* q, const float* X, int64_t d, const int64_t* ids, int64_t n,
                     float* out, float* scratch);
};

// How far ahead pack_rows / scan_rows (and their bf16 forms) prefetch the item stream
// (measured on Zen 4: 32-128 KiB ahead into L2 is best; 16-256 KiB within noise,
// none ~2.5x slower at B=1, prefetching into L1 slower too).
constexpr int64_t kPrefetchBytes = 64 * 1024;

// score_rows packs this many gathered rows at a time (4 panels: 4 independent FMA chains).
constexpr int64_t kRowsScratch = 4 * kPanel;

// Each returns nullptr when its ISA is not compiled for this architecture.
// Whether the CPU can run it is decided in dispatch.cpp.
const KernelOps* scalar_kernel();
const KernelOps* avx2_kernel();
const KernelOps* avx512_kernel();

}  // namespace rankers
