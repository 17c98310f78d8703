#include "pair_loss.h"

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

// Below this many pairs a second thread costs more than it saves.
constexpr int64_t kMinPairsPerThread = 1 << 16;

// H(n) = 1 + 1/2 + ... + 1/n (WARP's rank loss), exact below 64, asymptotic above
// (error < 1e-12 there, far below float32's resolution).
double harmonic(double n) {
  if (n < 1) return 0.0;
  if (n < 64) {
    double h = 0;
    for (int k = int(n); k >= 1; --k) h += 1.0 / k;
    return h;
  }
  const double i2 = 1.0 / (n * n);
  return std::log(n) + 0.5772156649015329 + 0.5 / n - i2 / 12.0 + i2 * i2 / 120.0;
}

// softplus(x) = log(1 + e^x) and its derivative, stable for any x (as torch's softplus).
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// The hinge's loss and gradient over one row for one positive: for every column j with
// grade < gp (and, with WARP, s_j + warp_margin > sp) and x = margin - (sp - s_j) > 0,
// *lp += w_j x, g[j] += c w_j, *gsum += c w_j, with w_j = cw[j] (kWeighted: importance
// weights of sampled columns) or 1. SSE (baseline x86-64): compilers do not vectorise the
// float sums without -ffast-math, which this build never uses.
template <bool kWeighted>
void hinge_pass(const float* s, const float* gr, const float* cw, float* g, int64_t K, float sp,
                float gp, float margin, float warp_margin, bool warp, float c, float* lp,
                float* gsum) {
  int64_t j = 0;
  float l = 0.f, gs = 0.f;
#ifdef RANKERS_SSE
  const __m128 vsp = _mm_set1_ps(sp), vgp = _mm_set1_ps(gp), vm = _mm_set1_ps(margin),
               vwm = _mm_set1_ps(warp_margin), vc = _mm_set1_ps(c), zero = _mm_setzero_ps();
  const __m128 all = _mm_castsi128_ps(_mm_set1_epi32(-1));
  __m128 acc_l = zero, acc_g = zero;
  for (; j + 4 <= K; j += 4) {
    const __m128 sj = _mm_loadu_ps(s + j);
    const __m128 x = _mm_sub_ps(vm, _mm_sub_ps(vsp, sj));
    __m128 on = _mm_and_ps(_mm_cmplt_ps(_mm_loadu_ps(gr + j), vgp), _mm_cmpgt_ps(x, zero));
    on = _mm_and_ps(on, warp ? _mm_cmpgt_ps(_mm_add_ps(sj, vwm), vsp) : all);
    __m128 d;
    if constexpr (kWeighted) {
      const __m128 w = _mm_loadu_ps(cw + j);
      acc_l = _mm_add_ps(acc_l, _mm_and_ps(on, _mm_mul_ps(w, x)));
      d = _mm_and_ps(on, _mm_mul_ps(vc, w));
    } else {
      acc_l = _mm_add_ps(acc_l, _mm_and_ps(on, x));
      d = _mm_and_ps(on, vc);
    }
    _mm_storeu_ps(g + j, _mm_add_ps(_mm_loadu_ps(g + j), d));
    acc_g = _mm_add_ps(acc_g, d);
  }
  float bl[4], bg[4];
  _mm_storeu_ps(bl, acc_l);
  _mm_storeu_ps(bg, acc_g);
  l = (bl[0] + bl[1]) + (bl[2] + bl[3]);
  gs = (bg[0] + bg[1]) + (bg[2] + bg[3]);
#endif
  for (; j < K; ++j) {
    const float x = margin - (sp - s[j]);
    if (gr[j] < gp && x > 0.f && (!warp || s[j] + warp_margin > sp)) {
      l += kWeighted ? cw[j] * x : x;
      const float d = kWeighted ? c * cw[j] : c;
      g[j] += d;
      gs += d;
    }
  }
  *lp = l;
  *gsum = gs;
}

// The logistic loss the same way (scalar: exp and log1p per pair dominate); cw nullptr: w_j = 1
// (a product by 1 is exact, so unweighted results are those of no weights at all).
void logistic_pass(const float* s, const float* gr, const float* cw, float* g, int64_t K, float sp,
                   float gp, float margin, float warp_margin, bool warp, float c, float* lp,
                   float* gsum) {
  float l = 0.f, gs = 0.f;
  for (int64_t j = 0; j < K; ++j) {
    if (!(gr[j] < gp) || (warp && !(s[j] + warp_margin > sp))) continue;
    const float x = margin - (sp - s[j]);
    const float w = cw == nullptr ? 1.f : cw[j];
    l += w * softplus(x);
    const float d = c * w * sigmoid(x);
    g[j] += d;
    gs += d;
  }
  *lp = l;
  *gsum = gs;
}

// Sum of cw[j] over the valid columns (grade < gp) and over the valid violators
// (s_j + warp_margin > sp): the weighted counts of pass 1, in SSE (float sums; the weights are
// estimates to begin with).
void weighted_counts(const float* s, const float* gr, const float* cw, int64_t K, float sp, float gp,
                     float warp_margin, double* n_valid, double* n_viol) {
  int64_t j = 0;
  float v = 0.f, x = 0.f;
#ifdef RANKERS_SSE
  const __m128 vsp = _mm_set1_ps(sp), vgp = _mm_set1_ps(gp), vwm = _mm_set1_ps(warp_margin);
  __m128 acc_v = _mm_setzero_ps(), acc_x = _mm_setzero_ps();
  for (; j + 4 <= K; j += 4) {
    const __m128 w = _mm_loadu_ps(cw + j);
    const __m128 valid = _mm_cmplt_ps(_mm_loadu_ps(gr + j), vgp);
    const __m128 viol = _mm_and_ps(valid, _mm_cmpgt_ps(_mm_add_ps(_mm_loadu_ps(s + j), vwm), vsp));
    acc_v = _mm_add_ps(acc_v, _mm_and_ps(valid, w));
    acc_x = _mm_add_ps(acc_x, _mm_and_ps(viol, w));
  }
  float bv[4], bx[4];
  _mm_storeu_ps(bv, acc_v);
  _mm_storeu_ps(bx, acc_x);
  v = (bv[0] + bv[1]) + (bv[2] + bv[3]);
  x = (bx[0] + bx[1]) + (bx[2] + bx[3]);
#endif
  for (; j < K; ++j) {
    if (!(gr[j] < gp)) continue;
    v += cw[j];
    if (s[j] + warp_margin > sp) x += cw[j];
  }
  *n_valid = v;
  *n_viol = x;
}

}  // namespace

void pair_loss_rows(const float* scores, int64_t R, int64_t K, const float* pos_score,
                    const int64_t* row_start, const float* pos_grade, const float* pos_weight,
                    const int64_t* graded_start, const int64_t* graded_col,
                    const float* graded_grade, const float* col_weight, PairLoss loss,
                    PairWeighting weighting, float margin, float warp_margin, int64_t n_items,
                    double* row_loss, double* row_weight, float* grad_scores, float* grad_pos,
                    int num_threads) {
  const int64_t P = row_start[R];
  const int T = int(std::clamp<int64_t>(P * K / kMinPairsPerThread, 1, std::max(1, num_threads)));
  parallel_for(T, [&](int w) {
    // Rows split by positives: near-equal shares of the work.
    const int64_t first = std::lower_bound(row_start, row_start + R, P * w / T) - row_start;
    const int64_t last = w == T - 1 ? R : std::lower_bound(row_start, row_start + R, P * (w + 1) / T) - row_start;
    std::vector<float> grade(size_t(K), 0.f);
    for (int64_t r = first; r < last; ++r) {
      const float* s = scores + r * K;
      float* g = grad_scores + r * K;
      std::fill(g, g + K, 0.f);
      for (int64_t e = graded_start[r]; e < graded_start[r + 1]; ++e) grade[size_t(graded_col[e])] = graded_grade[e];
      const float* gr = grade.data();
      double sum_loss = 0, sum_weight = 0;
      for (int64_t p = row_start[r]; p < row_start[r + 1]; ++p) {
        const float sp = pos_score[p], gp = pos_grade[p], rw = pos_weight[p];
        // Pass 1: valid pairs and violators (branch-free: vectorises); weighted, their
        // importance-weighted sums (estimates of the catalogue's counts, up to one scale).
        double n_valid = 0, n_viol = 0;
        if (col_weight == nullptr) {
          int32_t nv = 0, nx = 0;
          for (int64_t j = 0; j < K; ++j) {
            const int32_t valid = gr[j] < gp;
            nv += valid;
            nx += valid & int32_t(s[j] + warp_margin > sp);
          }
          n_valid = nv;
          n_viol = nx;
        } else {
          weighted_counts(s, gr, col_weight, K, sp, gp, warp_margin, &n_valid, &n_viol);
        }
        const bool warp = weighting == PairWeighting::kWarp;
        float c;  // the weight of each counted pair
        if (warp) {
          if (n_viol <= 0) {
            grad_pos[p] = 0.f;
            continue;
          }
          // unweighted: the float products of before, so results stay bit-equal
          const double rank = col_weight == nullptr
              ? std::floor(double(float(n_items - 1) * float(n_viol) / float(std::max(n_valid, 1.0))))
              : std::floor(double(n_items - 1) * std::min(1.0, n_viol / n_valid));
          c = float(rw * harmonic(rank) / n_viol);
          sum_weight += double(c) * n_viol;
        } else {
          c = rw;
          sum_weight += double(c) * n_valid;
        }
        // Pass 2: loss and gradient of the counted pairs (branch-free too).
        float lp = 0.f, gsum = 0.f;
        if (loss == PairLoss::kLogistic) {
          logistic_pass(s, gr, col_weight, g, K, sp, gp, margin, warp_margin, warp, c, &lp, &gsum);
        } else if (col_weight != nullptr) {
          hinge_pass<true>(s, gr, col_weight, g, K, sp, gp, margin, warp_margin, warp, c, &lp, &gsum);
        } else {
          hinge_pass<false>(s, gr, nullptr, g, K, sp, gp, margin, warp_margin, warp, c, &lp, &gsum);
        }
        grad_pos[p] = -gsum;
        sum_loss += double(c) * double(lp);
      }
      row_loss[r] = sum_loss;
      row_weight[r] = sum_weight;
      for (int64_t e = graded_start[r]; e < graded_start[r + 1]; ++e) grade[size_t(graded_col[e])] = 0.f;
    }
  });
}

}  // namespace rankers
