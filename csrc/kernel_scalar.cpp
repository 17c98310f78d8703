// Portable kernel: the reference for the score definition in kernels.h and the
// fallback on CPUs (or architectures) without the SIMD paths. std::fma is a single
// correctly rounded operation everywhere (glibc picks the FMA instruction when the
// CPU has one), so this agrees bit for bit with the SIMD kernels.
#include <cmath>
#include <cstring>

#include "kernels.h"

namespace rankers {
namespace {

void pack_panel(const float* const* rows, int64_t nr, int64_t d, float* P) {
  for (int64_t l = 0; l < kPanel; ++l) {
    if (l < nr) {
      for (int64_t j = 0; j < d; ++j) P[j * kPanel + l] = rows[l][j];
    } else {
      for (int64_t j = 0; j < d; ++j) P[j * kPanel + l] = 0.0f;
    }
  }
}

// s[l] = score(q, lane l of panel P)
void dot_panel(const float* q, int64_t d, const float* P, float* s) {
  for (int64_t l = 0; l < kPanel; ++l) s[l] = 0.0f;
  for (int64_t j = 0; j < d; ++j) {
    const float qj = q[j];
    const float* x = P + j * kPanel;
    for (int64_t l = 0; l < kPanel; ++l) s[l] = std::fma(qj, x[l], s[l]);
  }
}

void pack_rows(const float* X, int64_t d, int64_t first, int64_t n, int64_t /*limit*/,
                       float* P) {
  const float* rows[kPanel];
  for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
    const int64_t nr = n - p0 < kPanel ? n - p0 : kPanel;
    for (int64_t l = 0; l < nr; ++l) rows[l] = X + (first + p0 + l) * d;
    pack_panel(rows, nr, d, P + p0 * d);
  }
}

void scan_tile(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P, int64_t first,
               int64_t n, const ScanSink* sink) {
  float s[kPanel];
  for (int64_t q = q0; q < q1; ++q) {
    for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
      dot_panel(Q + q * d, d, P + p0 * d, s);
      const int64_t nr = n - p0 < kPanel ? n - p0 : kPanel;
      const float thr = sink->thr[q];
      uint32_t mask = 0;
      for (int64_t l = 0; l < nr; ++l) mask |= uint32_t(!(s[l] < thr)) << l;
      if (mask) sink->emit(sink->ctx, q, first + p0, s, mask);
    }
  }
}

void count_tile(const float* Q, int64_t q0, int64_t q1, int64_t d, const float* P, int64_t n,
                const CountJob* job) {
  float s[kPanel];
  for (int64_t q = q0; q < q1; ++q) {
    for (int64_t p0 = 0; p0 < n; p0 += kPanel) {
      dot_panel(Q + q * d, d, P + p0 * d, s);
      const int64_t nr = n - p0 < kPanel ? n - p0 : kPanel;
      // thresholds ascend: stop at the first one no item reaches
      for (int64_t o = job->off[q], e = job->off[q + 1]; o < e; ++o) {
        int64_t c = 0;
        for (int64_t l = 0; l < nr; ++l) c += s[l] >= job->thr[o];
        if (c == 0) break;
        job->cnt[o] += c;
      }
    }
  }
}

void score_rows(const float* q, const float* X, int64_t d, const int64_t* ids, int64_t n,
                float* out, float* scratch) {
  const float* rows[kPanel];
  float s[kPanel];
  for (int64_t c0 = 0; c0 < n; c0 += kPanel) {
    const int64_t nr = n - c0 < kPanel ? n - c0 : kPanel;
    for (int64_t l = 0; l < nr; ++l) rows[l] = X + ids[c0 + l] * d;
    pack_panel(rows, nr, d, scratch);
    dot_panel(q, d, scratch, s);
    std::memcpy(out + c0, s, sizeof(float) * nr);
  }
}

const KernelOps kOps = {"scalar", pack_rows, nullptr, scan_tile, nullptr, nullptr, count_tile, score_rows};

}  // namespace

const KernelOps* scalar_kernel() { return &kOps; }

}  // namespace rankers
