#include "sparse_rows.h"

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define RANKERS_SSE 1
#endif

#include "parallel.h"

namespace rankers {
namespace {
// Below this many entries a second thread costs more than it saves.
constexpr int64_t kMinEntriesPerThread = 4096;
// Rows are random accesses into tables larger than the caches: fetch this many runs ahead.
constexpr int64_t kPrefetchRuns = 8;

inline void prefetch_row(const float* row, int64_t d) {
#ifdef RANKERS_SSE
  const char* b = reinterpret_cast<const char*>(row);
  for (int64_t off = 0; off < d * int64_t(sizeof(float)); off += 64) _mm_prefetch(b + off, _MM_HINT_T0);
#else
  (void)row, (void)d;
#endif
}

// s += g * g; p -= lr * (g / (sqrt(s) + eps)), element by element. SSE is baseline x86-64;
// std::sqrt would not vectorise without -fno-math-errno. Both paths round each operation
// once (sqrtps is correctly rounded), so they agree bit for bit.
inline void adagrad_row(float* p, float* s, const float* g, int64_t d, float lr, float eps) {
  int64_t j = 0;
#ifdef RANKERS_SSE
  const __m128 vlr = _mm_set1_ps(lr), veps = _mm_set1_ps(eps);
  for (; j + 4 <= d; j += 4) {
    const __m128 gj = _mm_loadu_ps(g + j);
    const __m128 sj = _mm_add_ps(_mm_loadu_ps(s + j), _mm_mul_ps(gj, gj));
    _mm_storeu_ps(s + j, sj);
    const __m128 step = _mm_mul_ps(vlr, _mm_div_ps(gj, _mm_add_ps(_mm_sqrt_ps(sj), veps)));
    _mm_storeu_ps(p + j, _mm_sub_ps(_mm_loadu_ps(p + j), step));
  }
#endif
  for (; j < d; ++j) {
    s[j] += g[j] * g[j];
    p[j] -= lr * (g[j] / (std::sqrt(s[j]) + eps));
  }
}
}  // namespace

void adagrad_rows(float* param, float* state, int64_t d, const int64_t* rows,
                  const int64_t* order, const float* values, int64_t M, float lr, float eps,
                  int num_threads) {
  if (M == 0) return;
  // Runs of equal rows: each is one row's update, so threads split between runs.
  std::vector<int64_t> starts;
  starts.reserve(size_t(M) + 1);
  for (int64_t m = 0; m < M; ++m)
    if (m == 0 || rows[m] != rows[m - 1]) starts.push_back(m);
  const int64_t R = int64_t(starts.size());
  starts.push_back(M);
  const int T = int(std::clamp<int64_t>(M / kMinEntriesPerThread, 1, std::max(1, num_threads)));
  parallel_for(T, [&](int w) {
    // Run boundaries for this thread: near-equal shares of the entries.
    const auto first = std::lower_bound(starts.begin(), starts.begin() + R, M * w / T);
    const auto last = std::lower_bound(starts.begin(), starts.begin() + R, M * (w + 1) / T);
    std::vector<float> g(static_cast<size_t>(d));
    const auto end = starts.begin() + R;
    for (auto it = first; it != last; ++it) {
      if (end - it > kPrefetchRuns) {
        const int64_t ahead = *(it + kPrefetchRuns);
        prefetch_row(param + rows[ahead] * d, d);
        prefetch_row(state + rows[ahead] * d, d);
        prefetch_row(values + order[ahead] * d, d);
      }
      const int64_t lo = *it, hi = *(it + 1);
      const float* v0 = values + order[lo] * d;
      std::copy(v0, v0 + d, g.begin());
      for (int64_t m = lo + 1; m < hi; ++m) {
        const float* v = values + order[m] * d;
        for (int64_t j = 0; j < d; ++j) g[size_t(j)] += v[j];
      }
      adagrad_row(param + rows[lo] * d, state + rows[lo] * d, g.data(), d, lr, eps);
    }
  });
}

void bag_backward(const int64_t* tokens, const float* weights, const float* grad_out, int64_t B,
                  int64_t T, int64_t d, int64_t padding, float* grad, int64_t N, int num_threads) {
  const int64_t M = B * T;
  const int W = int(std::clamp<int64_t>(M * d / (kMinEntriesPerThread * 16), 1, std::max(1, num_threads)));
  parallel_for(W, [&](int w) {
    const int64_t lo = N * w / W, hi = N * (w + 1) / W;
    for (int64_t m = 0; m < M; ++m) {
      const int64_t k = tokens[m];
      if (k < lo || k >= hi || k == padding) continue;
      const float a = weights[m];
      const float* go = grad_out + (m / T) * d;
      float* g = grad + k * d;
      for (int64_t j = 0; j < d; ++j) g[j] += a * go[j];
    }
  });
}

}  // namespace rankers
