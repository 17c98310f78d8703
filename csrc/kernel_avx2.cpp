// AVX2+FMA kernel: same panels and accumulation order as kernel_avx512.cpp, a panel
// being two ymm registers (lanes 0-7, 8-15). 16 ymm registers bound the tiles to
// MQ * NP * 2 <= 8 accumulators plus loads.
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "prefetch.h"

#define RK_AVX2 __attribute__((target("avx2,fma,popcnt")))

namespace rankers {
namespace {

// In-register transpose of an 8x8 block: r[i] lane j  ->  r[j] lane i.
RK_AVX2 inline __attribute__((always_inline)) void transpose8(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 2; ++g) {
    const __m256* a = t + 4 * g;
    __m256* o = u + 4 * g;
    o[0] = _mm256_shuffle_ps(a[0], a[2], _MM_SHUFFLE(1, 0, 1, 0));
    o[1] = _mm256_shuffle_ps(a[0], a[2], _MM_SHUFFLE(3, 2, 3, 2));
    o[2] = _mm256_shuffle_ps(a[1], a[3], _MM_SHUFFLE(1, 0, 1, 0));
    o[3] = _mm256_shuffle_ps(a[1], a[3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}

RK_AVX2 inline uint32_t lanes(int64_t n) { return n >= 16 ? 0xFFFFu : (1u << n) - 1u; }

// rows[0..nr): nr <= 16 rows of d floats -> one panel: element j of lane l at
// P[j * stride + l]. Loops over l/jj are unrolled so v[] stays in registers.
RK_AVX2 void pack_panel(const float* const* rows, int64_t nr, int64_t d, float* P,
                        int64_t stride) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i none = _mm256_setzero_si256();
  __m256 v[8];
  for (int h = 0; h < 2; ++h) {
    const float* const* r = rows + 8 * h;
    const int64_t hr = nr - 8 * h;  // rows present in this half (may be <= 0)
    int64_t j0 = 0;
    if (hr >= 8) {
      for (; j0 + 8 <= d; j0 += 8) {
#pragma GCC unroll 8
        for (int l = 0; l < 8; ++l) v[l] = _mm256_loadu_ps(r[l] + j0);
        transpose8(v);
#pragma GCC unroll 8
        for (int jj = 0; jj < 8; ++jj) _mm256_store_ps(P + (j0 + jj) * stride + 8 * h, v[jj]);
      }
    }
    // Short halves and the last d % 8 columns: masked loads, zero rows past nr.
    for (; j0 < d; j0 += 8) {
      const int64_t w = d - j0 < 8 ? d - j0 : 8;
      const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(w)), iota);
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l)
        v[l] = _mm256_maskload_ps((l < hr ? r[l] : rows[0]) + j0, l < hr ? m : none);
      transpose8(v);
#pragma GCC unroll 8
      for (int jj = 0; jj < 8; ++jj)
        if (jj < w) _mm256_store_ps(P + (j0 + jj) * stride + 8 * h, v[jj]);
    }
  }
}

RK_AVX2 void pack_rows(const float* X, int64_t d, int64_t first, int64_t n, int64_t limit,
                       float* P) {
  const float* rows[16];
  const int64_t stride = (n + kPanel - 1) / kPanel * kPanel;
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t nr = n - p0 < kPanel ? n - p0 : kPanel;
    for (int64_t l = 0; l < nr; ++l) rows[l] = X + (first + p0 + l) * d;
    prefetch_ahead(X, d, first + p0, nr, limit);
    pack_panel(rows, nr, d, P + p0, stride);
  }
}

// 16 lanes of a panel (two ymm) -> a 16-bit mask of lanes where cmp(s, t) holds.
template <int kCmp>
RK_AVX2 inline __attribute__((always_inline)) uint32_t mask16(const __m256* s, __m256 t) {
  const uint32_t lo = uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(s[0], t, kCmp)));
  const uint32_t hi = uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(s[1], t, kCmp)));
  return lo | hi << 8;
}

// Filter epilogue: one compare per 16 scores against the running threshold.
RK_AVX2 inline __attribute__((always_inline)) void filter(const __m256* s, uint32_t valid,
                                                         int64_t q, int64_t first, __m256& t,
                                                         const ScanSink* sink) {
  const uint32_t m = mask16<_CMP_NLT_UQ>(s, t) & valid;
  if (m) {
    alignas(32) float buf[16];
    _mm256_store_ps(buf, s[0]);
    _mm256_store_ps(buf + 8, s[1]);
    sink->emit(sink->ctx, q, first, buf, m);
    t = _mm256_set1_ps(sink->thr[q]);
  }
}

// Count epilogue: thresholds ascend, so stop at the first one no lane reaches.
RK_AVX2 inline __attribute__((always_inline)) void count(const __m256* s, uint32_t valid, int64_t q,
                                                        const CountJob* job) {
  for (int64_t o = job->off[q], e = job->off[q + 1]; o < e; ++o) {
    const uint32_t m = mask16<_CMP_GE_OQ>(s, _mm256_set1_ps(job->thr[o])) & valid;
    if (!m) break;
    job->cnt[o] += _mm_popcnt_u32(m);
  }
}

// MQ queries x NP panels starting at panel p of a tile of n items.
// out: ScanSink (kCount false) or CountJob (kCount true).
template <int MQ, int NP, bool kCount>
RK_AVX2 void block(const float* Q, int64_t q, int64_t d, const float* P, int64_t p,
                   int64_t first, int64_t n, const void* out) {
  __m256 acc[MQ][NP][2];
  for (int a = 0; a < MQ; ++a)
    for (int b = 0; b < NP; ++b) acc[a][b][0] = acc[a][b][1] = _mm256_setzero_ps();
  const int64_t stride = (n + kPanel - 1) / kPanel * kPanel;
  const float* x = P + p * kPanel;
  const float* qr = Q + q * d;
  for (int64_t j = 0; j < d; ++j) {
    __m256 xv[NP][2];
    for (int b = 0; b < NP; ++b) {
      xv[b][0] = _mm256_load_ps(x + j * stride + b * kPanel);
      xv[b][1] = _mm256_load_ps(x + j * stride + b * kPanel + 8);
    }
    for (int a = 0; a < MQ; ++a) {
      const __m256 qv = _mm256_broadcast_ss(qr + a * d + j);
      for (int b = 0; b < NP; ++b) {
        acc[a][b][0] = _mm256_fmadd_ps(qv, xv[b][0], acc[a][b][0]);
        acc[a][b][1] = _mm256_fmadd_ps(qv, xv[b][1], acc[a][b][1]);
      }
    }
  }
  for (int a = 0; a < MQ; ++a) {
    if constexpr (kCount) {
      for (int b = 0; b < NP; ++b)
        count(acc[a][b], lanes(n - (p + b) * kPanel), q + a, static_cast<const CountJob*>(out));
    } else {
      const ScanSink* sink = static_cast<const ScanSink*>(out);
      __m256 t = _mm256_set1_ps(sink->thr[q + a]);
      for (int b = 0; b < NP; ++b) {
        const int64_t i0 = (p + b) * kPanel;
        filter(acc[a][b], lanes(n - i0), q + a, first + i0, t, sink);
      }
    }
  }
}

template <int MQ, int NP, bool kCount>
RK_AVX2 void sweep(const float* Q, int64_t q, int64_t d, const float* P, int64_t first,
                   int64_t n, const void* out) {
  const int64_t np = (n + kPanel - 1) / kPanel;
  int64_t p = 0;
  for (; p + NP <= np; p += NP) block<MQ, NP, kCount>(Q, q, d, P, p, first, n, out);
  for (; p < np; ++p) block<MQ, 1, kCount>(Q, q, d, P, p, first, n, out);
}

template <bool kCount>
RK_AVX2 void sweep_all(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                       int64_t first, int64_t n, const void* out) {
  int64_t q = q0;
  for (; q + 4 <= q1; q += 4) sweep<4, 1, kCount>(Q, q, d, P, first, n, out);
  if (q + 2 <= q1) { sweep<2, 2, kCount>(Q, q, d, P, first, n, out); q += 2; }
  if (q < q1) sweep<1, 4, kCount>(Q, q, d, P, first, n, out);
}

RK_AVX2 void scan_tile(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                       int64_t first, int64_t n, const ScanSink* sink) {
  sweep_all<false>(Q, q0, q1, d, P, first, n, sink);
}

RK_AVX2 void count_tile(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                        int64_t n, const CountJob* job) {
  sweep_all<true>(Q, q0, q1, d, P, 0, n, job);
}

// Scores of the n (<= NP * 16) items packed at P (NP panels, layout of pack_rows).
template <int NP>
RK_AVX2 void dots(const float* q, int64_t d, const float* P, int64_t n, float* out) {
  __m256 acc[NP][2];
  for (int b = 0; b < NP; ++b) acc[b][0] = acc[b][1] = _mm256_setzero_ps();
  for (int64_t j = 0; j < d; ++j) {
    const __m256 qv = _mm256_broadcast_ss(q + j);
    for (int b = 0; b < NP; ++b) {
      acc[b][0] = _mm256_fmadd_ps(qv, _mm256_load_ps(P + j * NP * kPanel + b * kPanel), acc[b][0]);
      acc[b][1] = _mm256_fmadd_ps(qv, _mm256_load_ps(P + j * NP * kPanel + b * kPanel + 8), acc[b][1]);
    }
  }
  alignas(32) float s[NP * kPanel];
  for (int b = 0; b < NP; ++b) {
    _mm256_store_ps(s + b * kPanel, acc[b][0]);
    _mm256_store_ps(s + b * kPanel + 8, acc[b][1]);
  }
  for (int64_t c = 0; c < n; ++c) out[c] = s[c];
}

// Rows are random accesses: request them a group ahead, into L2 (requests into L1
// stall on its few miss buffers; measured ~3x slower for 1000 random rows).
RK_AVX2 void prefetch_rows(const float* X, int64_t d, const int64_t* ids, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    const char* r = reinterpret_cast<const char*>(X + ids[c] * d);
    const int64_t bytes = d * int64_t(sizeof(float));
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(r + off, _MM_HINT_T1);
    _mm_prefetch(r + bytes - 1, _MM_HINT_T1);  // rows need not start on a line
  }
}

RK_AVX2 void score_rows(const float* q, const float* X, int64_t d, const int64_t* ids,
                        int64_t n, float* out, float* scratch) {
  const float* rows[16];
  prefetch_rows(X, d, ids, 0, n < kRowsScratch ? n : kRowsScratch);
  for (int64_t c0 = 0; c0 < n; c0 += kRowsScratch) {
    const int64_t nc = n - c0 < kRowsScratch ? n - c0 : kRowsScratch;
    const int64_t c2 = c0 + 2 * kRowsScratch < n ? c0 + 2 * kRowsScratch : n;
    prefetch_rows(X, d, ids, c0 + nc, c2);
    const int64_t stride = (nc + kPanel - 1) / kPanel * kPanel;
    for (int64_t p0 = 0; p0 < nc; p0 += kPanel) {
      const int64_t nr = nc - p0 < kPanel ? nc - p0 : kPanel;
      for (int64_t l = 0; l < nr; ++l) rows[l] = X + ids[c0 + p0 + l] * d;
      pack_panel(rows, nr, d, scratch + p0, stride);
    }
    switch ((nc + kPanel - 1) / kPanel) {
      case 4: dots<4>(q, d, scratch, nc, out + c0); break;
      case 3: dots<3>(q, d, scratch, nc, out + c0); break;
      case 2: dots<2>(q, d, scratch, nc, out + c0); break;
      default: dots<1>(q, d, scratch, nc, out + c0); break;
    }
  }
}

const KernelOps kOps = {"avx2", pack_rows, nullptr, scan_tile, nullptr, nullptr, count_tile, score_rows};

}  // namespace

const KernelOps* avx2_kernel() { return &kOps; }

}  // namespace rankers

#else

namespace rankers {
const KernelOps* avx2_kernel() { return nullptr; }
}  // namespace rankers

#endif
