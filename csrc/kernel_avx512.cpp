// AVX-512F kernel: one item per lane (16 per zmm), register tiles of MQ queries x
// NP panels, FMA accumulation in the order fixed by kernels.h. Every function
// carries its own target attribute; the only shared inline code is prefetch.h, which
// needs no target (baseline x86-64) and so means the same in every kernel.
#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "prefetch.h"

// GCC 12 flags the deliberately undefined source operand (_mm512_undefined_ps) inside
// its own unpack/shuffle intrinsics once they are inlined here; it is harmless.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define RK_AVX512 __attribute__((target("avx512f,avx2,fma,popcnt")))

namespace rankers {
namespace {

// In-register transpose of a 16x16 block: r[i] lane j  ->  r[j] lane i.
RK_AVX512 inline __attribute__((always_inline)) void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {
    const __m512d* a = reinterpret_cast<const __m512d*>(t + 4 * g);
    __m512* o = r + 4 * g;
    o[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a[0], a[2]));
    o[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a[0], a[2]));
    o[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a[1], a[3]));
    o[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a[1], a[3]));
  }
  for (int g = 0; g < 2; ++g) {
    const __m512* a = r + 8 * g;
    __m512* o = t + 8 * g;
    for (int i = 0; i < 4; ++i) {
      o[i] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0x88);
      o[i + 4] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
}

RK_AVX512 inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
}

// rows[0..nr): nr <= 16 rows of d floats -> one panel: element j of lane l at
// P[j * stride + l] (aligned). Loops over l/jj are unrolled so v[] stays in
// registers (a runtime index would send all 16 vectors through the stack).
RK_AVX512 void pack_panel(const float* const* rows, int64_t nr, int64_t d, float* P,
                          int64_t stride) {
  __m512 v[16];
  int64_t j0 = 0;
  if (nr == 16) {
    for (; j0 + 16 <= d; j0 += 16) {
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l) v[l] = _mm512_loadu_ps(rows[l] + j0);
      transpose16(v);
#pragma GCC unroll 16
      for (int jj = 0; jj < 16; ++jj) _mm512_store_ps(P + (j0 + jj) * stride, v[jj]);
    }
  }
  // Short panels and the last d % 16 columns: masked loads, zero rows past nr.
  for (; j0 < d; j0 += 16) {
    const int64_t w = d - j0 < 16 ? d - j0 : 16;
    const __mmask16 m = lanes(w);
#pragma GCC unroll 16
    for (int l = 0; l < 16; ++l)
      v[l] = _mm512_maskz_loadu_ps(l < nr ? m : __mmask16(0), rows[l < nr ? l : 0] + j0);
    transpose16(v);
#pragma GCC unroll 16
    for (int jj = 0; jj < 16; ++jj)
      if (jj < w) _mm512_store_ps(P + (j0 + jj) * stride, v[jj]);
  }
}

RK_AVX512 void pack_rows(const float* X, int64_t d, int64_t first, int64_t n, int64_t limit,
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

// bf16 panel: rows[0..nr) of d uint16 (bfloat16 bits) -> the panel pack_panel would
// make from the widened rows. A full panel reads 32 columns per row as one zmm of
// 16 bf16 pairs: the even columns are the pairs shifted left by 16, the odd ones the
// pairs with the low half cleared (integer ops, no shuffles), then the same transposes.
RK_AVX512 void pack_panel_bf16(const uint16_t* const* rows, int64_t nr, int64_t d, float* P,
                               int64_t stride) {
  __m512 v[16];
  int64_t j0 = 0;
  if (nr == 16) {
    const __m512i hi = _mm512_set1_epi32(int(0xFFFF0000u));
    for (; j0 + 32 <= d; j0 += 32) {
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l)
        v[l] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(rows[l] + j0), 16));
      transpose16(v);
#pragma GCC unroll 16
      for (int m = 0; m < 16; ++m) _mm512_store_ps(P + (j0 + 2 * m) * stride, v[m]);
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l)
        v[l] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(rows[l] + j0), hi));
      transpose16(v);
#pragma GCC unroll 16
      for (int m = 0; m < 16; ++m) _mm512_store_ps(P + (j0 + 2 * m + 1) * stride, v[m]);
    }
  }
  // Short panels and the last d % 32 columns: widen through a small buffer.
  alignas(64) uint32_t buf[16][16];
  for (; j0 < d; j0 += 16) {
    const int64_t w = d - j0 < 16 ? d - j0 : 16;
    for (int l = 0; l < 16; ++l)
      for (int64_t jj = 0; jj < 16; ++jj)
        buf[l][jj] = l < nr && jj < w ? uint32_t(rows[l][j0 + jj]) << 16 : 0u;
#pragma GCC unroll 16
    for (int l = 0; l < 16; ++l) v[l] = _mm512_load_ps(reinterpret_cast<const float*>(buf[l]));
    transpose16(v);
#pragma GCC unroll 16
    for (int jj = 0; jj < 16; ++jj)
      if (jj < w) _mm512_store_ps(P + (j0 + jj) * stride, v[jj]);
  }
}

RK_AVX512 void pack_rows_bf16(const uint16_t* X, int64_t d, int64_t first, int64_t n,
                              int64_t limit, float* P) {
  const uint16_t* rows[16];
  const int64_t stride = (n + kPanel - 1) / kPanel * kPanel;
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t nr = n - p0 < kPanel ? n - p0 : kPanel;
    for (int64_t l = 0; l < nr; ++l) rows[l] = X + (first + p0 + l) * d;
    prefetch_ahead(X, d, first + p0, nr, limit);
    pack_panel_bf16(rows, nr, d, P + p0, stride);
  }
}

// Filter epilogue: one compare per 16 scores against the running threshold.
RK_AVX512 inline __attribute__((always_inline)) void filter(__m512 s, __mmask16 valid, int64_t q,
                                                           int64_t first, __m512& t,
                                                           const ScanSink* sink) {
  const __mmask16 m = _mm512_cmp_ps_mask(s, t, _CMP_NLT_UQ) & valid;
  if (m) {
    alignas(64) float buf[16];
    _mm512_store_ps(buf, s);
    sink->emit(sink->ctx, q, first, buf, m);
    t = _mm512_set1_ps(sink->thr[q]);
  }
}

// Count epilogue: thresholds ascend, so stop at the first one no lane reaches.
RK_AVX512 inline __attribute__((always_inline)) void count(__m512 s, __mmask16 valid, int64_t q,
                                                          const CountJob* job) {
  for (int64_t o = job->off[q], e = job->off[q + 1]; o < e; ++o) {
    const __mmask16 m = _mm512_cmp_ps_mask(s, _mm512_set1_ps(job->thr[o]), _CMP_GE_OQ) & valid;
    if (!m) break;
    job->cnt[o] += _mm_popcnt_u32(m);
  }
}

// MQ queries x NP panels starting at panel p of a tile of n items.
// out: ScanSink (kCount false) or CountJob (kCount true).
template <int MQ, int NP, bool kCount>
RK_AVX512 void block(const float* Q, int64_t q, int64_t d, const float* P, int64_t p,
                     int64_t first, int64_t n, const void* out) {
  __m512 acc[MQ][NP];
  for (int a = 0; a < MQ; ++a)
    for (int b = 0; b < NP; ++b) acc[a][b] = _mm512_setzero_ps();
  const int64_t stride = (n + kPanel - 1) / kPanel * kPanel;
  const float* x = P + p * kPanel;
  const float* qr = Q + q * d;
  for (int64_t j = 0; j < d; ++j) {
    __m512 xv[NP];
    for (int b = 0; b < NP; ++b) xv[b] = _mm512_load_ps(x + j * stride + b * kPanel);
    for (int a = 0; a < MQ; ++a) {
      const __m512 qv = _mm512_set1_ps(qr[a * d + j]);
      for (int b = 0; b < NP; ++b) acc[a][b] = _mm512_fmadd_ps(qv, xv[b], acc[a][b]);
    }
  }
  for (int a = 0; a < MQ; ++a) {
    if constexpr (kCount) {
      for (int b = 0; b < NP; ++b)
        count(acc[a][b], lanes(n - (p + b) * kPanel), q + a, static_cast<const CountJob*>(out));
    } else {
      const ScanSink* sink = static_cast<const ScanSink*>(out);
      __m512 t = _mm512_set1_ps(sink->thr[q + a]);
      for (int b = 0; b < NP; ++b) {
        const int64_t i0 = (p + b) * kPanel;
        filter(acc[a][b], lanes(n - i0), q + a, first + i0, t, sink);
      }
    }
  }
}

template <int MQ, int NP, bool kCount>
RK_AVX512 void sweep(const float* Q, int64_t q, int64_t d, const float* P, int64_t first,
                     int64_t n, const void* out) {
  const int64_t np = (n + kPanel - 1) / kPanel;
  int64_t p = 0;
  for (; p + NP <= np; p += NP) block<MQ, NP, kCount>(Q, q, d, P, p, first, n, out);
  for (; p < np; ++p) block<MQ, 1, kCount>(Q, q, d, P, p, first, n, out);
}

// Register tiles: 8 queries x 2 panels (16 accumulators) while queries last,
// then narrower and longer tiles so even one query keeps 8 FMA chains busy.
template <bool kCount>
RK_AVX512 void sweep_all(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                         int64_t first, int64_t n, const void* out) {
  int64_t q = q0;
  for (; q + 8 <= q1; q += 8) sweep<8, 2, kCount>(Q, q, d, P, first, n, out);
  if (q + 4 <= q1) { sweep<4, 4, kCount>(Q, q, d, P, first, n, out); q += 4; }
  if (q + 2 <= q1) { sweep<2, 4, kCount>(Q, q, d, P, first, n, out); q += 2; }
  if (q < q1) sweep<1, 8, kCount>(Q, q, d, P, first, n, out);
}

RK_AVX512 void scan_tile(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                         int64_t first, int64_t n, const ScanSink* sink) {
  sweep_all<false>(Q, q0, q1, d, P, first, n, sink);
}

// One query against row-major rows: each 16 rows x 16 columns are transposed in
// registers and fed straight into the FMA chain, in column order (the same score).
RK_AVX512 void scan_rows(const float* Q, int64_t q, int64_t d, const float* X, int64_t first,
                         int64_t n, int64_t limit, const ScanSink* sink) {
  const float* qr = Q + q * d;
  __m512 t = _mm512_set1_ps(sink->thr[q]);
  __m512 v[16];
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t nr = n - p0 < kPanel ? n - p0 : kPanel;
    const float* x0 = X + (first + p0) * d;
    prefetch_ahead(X, d, first + p0, nr, limit);
    __m512 acc = _mm512_setzero_ps();
    int64_t j0 = 0;
    if (nr == 16) {
      for (; j0 + 16 <= d; j0 += 16) {
#pragma GCC unroll 16
        for (int l = 0; l < 16; ++l) v[l] = _mm512_loadu_ps(x0 + l * d + j0);
        transpose16(v);
#pragma GCC unroll 16
        for (int jj = 0; jj < 16; ++jj) acc = _mm512_fmadd_ps(_mm512_set1_ps(qr[j0 + jj]), v[jj], acc);
      }
    }
    for (; j0 < d; j0 += 16) {
      const int64_t w = d - j0 < 16 ? d - j0 : 16;
      const __mmask16 m = lanes(w);
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l)
        v[l] = _mm512_maskz_loadu_ps(l < nr ? m : __mmask16(0), x0 + (l < nr ? l : 0) * d + j0);
      transpose16(v);
#pragma GCC unroll 16
      for (int jj = 0; jj < 16; ++jj)
        if (jj < w) acc = _mm512_fmadd_ps(_mm512_set1_ps(qr[j0 + jj]), v[jj], acc);
    }
    filter(acc, lanes(nr), q, first + p0, t, sink);
  }
}

// scan_rows from bf16 rows: 16 bf16 of a row are zero-extended to 32 bits and
// shifted left by 16 (exact widening), then transposed and accumulated as above.
RK_AVX512 void scan_rows_bf16(const float* Q, int64_t q, int64_t d, const uint16_t* X,
                              int64_t first, int64_t n, int64_t limit, const ScanSink* sink) {
  const float* qr = Q + q * d;
  __m512 t = _mm512_set1_ps(sink->thr[q]);
  __m512 v[16];
  alignas(64) uint32_t buf[16][16];
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t nr = n - p0 < kPanel ? n - p0 : kPanel;
    const uint16_t* x0 = X + (first + p0) * d;
    prefetch_ahead(X, d, first + p0, nr, limit);
    __m512 acc = _mm512_setzero_ps();
    int64_t j0 = 0;
    if (nr == 16) {
      for (; j0 + 16 <= d; j0 += 16) {
#pragma GCC unroll 16
        for (int l = 0; l < 16; ++l)
          v[l] = _mm512_castsi512_ps(_mm512_slli_epi32(
              _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                  reinterpret_cast<const __m256i*>(x0 + l * d + j0))), 16));
        transpose16(v);
#pragma GCC unroll 16
        for (int jj = 0; jj < 16; ++jj) acc = _mm512_fmadd_ps(_mm512_set1_ps(qr[j0 + jj]), v[jj], acc);
      }
    }
    for (; j0 < d; j0 += 16) {
      const int64_t w = d - j0 < 16 ? d - j0 : 16;
      for (int l = 0; l < 16; ++l)
        for (int64_t jj = 0; jj < 16; ++jj)
          buf[l][jj] = l < nr && jj < w ? uint32_t(x0[l * d + j0 + jj]) << 16 : 0u;
#pragma GCC unroll 16
      for (int l = 0; l < 16; ++l) v[l] = _mm512_load_ps(reinterpret_cast<const float*>(buf[l]));
      transpose16(v);
#pragma GCC unroll 16
      for (int jj = 0; jj < 16; ++jj)
        if (jj < w) acc = _mm512_fmadd_ps(_mm512_set1_ps(qr[j0 + jj]), v[jj], acc);
    }
    filter(acc, lanes(nr), q, first + p0, t, sink);
  }
}

RK_AVX512 void count_tile(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P,
                          int64_t n, const CountJob* job) {
  sweep_all<true>(Q, q0, q1, d, P, 0, n, job);
}

// Scores of the n (<= NP * 16) items packed at P (NP panels, layout of pack_rows).
template <int NP>
RK_AVX512 void dots(const float* q, int64_t d, const float* P, int64_t n, float* out) {
  __m512 acc[NP];
  for (int b = 0; b < NP; ++b) acc[b] = _mm512_setzero_ps();
  for (int64_t j = 0; j < d; ++j) {
    const __m512 qv = _mm512_set1_ps(q[j]);
    for (int b = 0; b < NP; ++b)
      acc[b] = _mm512_fmadd_ps(qv, _mm512_load_ps(P + j * NP * kPanel + b * kPanel), acc[b]);
  }
  for (int b = 0; b < NP; ++b) _mm512_mask_storeu_ps(out + b * kPanel, lanes(n - b * kPanel), acc[b]);
}

// Rows are random accesses: request them a group ahead, into L2 (requests into L1
// stall on its few miss buffers; measured ~3x slower for 1000 random rows).
RK_AVX512 void prefetch_rows(const float* X, int64_t d, const int64_t* ids, int64_t c0, int64_t c1) {
  for (int64_t c = c0; c < c1; ++c) {
    const char* r = reinterpret_cast<const char*>(X + ids[c] * d);
    const int64_t bytes = d * int64_t(sizeof(float));
    for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(r + off, _MM_HINT_T1);
    _mm_prefetch(r + bytes - 1, _MM_HINT_T1);  // rows need not start on a line
  }
}

RK_AVX512 void score_rows(const float* q, const float* X, int64_t d, const int64_t* ids,
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

const KernelOps kOps = {"avx512", pack_rows, pack_rows_bf16, scan_tile, scan_rows, scan_rows_bf16, count_tile, score_rows};

}  // namespace

const KernelOps* avx512_kernel() { return &kOps; }

}  // namespace rankers

#else

namespace rankers {
const KernelOps* avx512_kernel() { return nullptr; }
}  // namespace rankers

#endif
