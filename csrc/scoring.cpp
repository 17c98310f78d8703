// Drivers: blocking, threads and what to keep. How scores are computed lives in
// the kernels (kernels.h); every score is bit-identical whatever the blocking or
// thread split, and every selection uses the total order of select.h, so results
// do not depend on either.
#include "scoring.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "select.h"

namespace rankers {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Below this many multiply-adds per thread, starting a thread costs more than it saves.
constexpr int64_t kMinWorkPerThread = int64_t(1) << 22;
// Split over queries once every thread gets this many; below, split over items
// (small batches are memory bound: each item should be read once).
constexpr int64_t kQueriesPerThread = 32;
constexpr int64_t kTileBytes = 32 * 1024;  // packed item tile: stays in L1/L2 while queries sweep it
constexpr int64_t kQueryBlock = 256;

// 64-byte aligned float scratch (panels are read with aligned loads).
class AlignedFloats {
 public:
  explicit AlignedFloats(int64_t n) {
    const size_t bytes = (size_t(std::max<int64_t>(n, 1)) * sizeof(float) + 63) / 64 * 64;
    p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p_) throw std::bad_alloc();
  }
  ~AlignedFloats() { std::free(p_); }
  AlignedFloats(const AlignedFloats&) = delete;
  AlignedFloats& operator=(const AlignedFloats&) = delete;
  float* get() const { return p_; }

 private:
  float* p_;
};

// Scores must not depend on the caller's FTZ/DAZ (torch.set_flush_denormal) or on
// which thread computes them: run every compute region with the default FP mode.
class DefaultFpMode {
 public:
#if defined(__x86_64__) || defined(_M_X64)
  DefaultFpMode() : saved_(_mm_getcsr()) { _mm_setcsr(0x1F80); }
  ~DefaultFpMode() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#else
  DefaultFpMode() { std::fegetenv(&saved_); std::fesetenv(FE_DFL_ENV); }
  ~DefaultFpMode() { std::fesetenv(&saved_); }

 private:
  std::fenv_t saved_;
#endif
};

// Runs f(0..T-1) on T threads (the caller is worker 0). Threads are made per call:
// no pool to go stale across fork(), and a call is long enough to amortise them.
template <class F>
void parallel_for(int T, const F& f) {
  std::vector<std::exception_ptr> err(size_t(std::max(T, 1)));
  auto run = [&](int w) {
    DefaultFpMode fp;
    try {
      f(w);
    } catch (...) {
      err[size_t(w)] = std::current_exception();
    }
  };
  std::vector<std::thread> th;
  int w = 1;
  try {
    for (; w < T; ++w) th.emplace_back(run, w);
  } catch (...) {
    // Could not start a thread: do its share (and the rest) here.
  }
  for (int r = w; r < T; ++r) run(r);
  run(0);
  for (auto& t : th) t.join();
  for (auto& e : err)
    if (e) std::rethrow_exception(e);
}

Tiles resolve(Tiles t, int64_t d) {
  if (t.item_tile <= 0) {
    const int64_t per = kTileBytes / (int64_t(sizeof(float)) * std::max<int64_t>(d, 1));
    t.item_tile = std::clamp<int64_t>((per + kPanel - 1) / kPanel * kPanel, kPanel, 4096);
  }
  if (t.query_block <= 0) t.query_block = kQueryBlock;
  return t;
}

struct Plan {
  int threads;
  bool split_items;
};

Plan plan(int64_t B, int64_t N, int64_t d, int num_threads) {
  const int64_t work = B * N * std::max<int64_t>(d, 1);
  int64_t T = std::max(1, num_threads);
  T = std::min(T, std::max<int64_t>(1, work / kMinWorkPerThread));
  const bool split_items = B < kQueriesPerThread * T;
  if (split_items) T = std::min(T, std::max<int64_t>(1, N / kPanel));
  return {int(T), split_items};
}

// Worker w of T: its query range [qa, qb) and item range [ia, ib).
struct Range {
  int64_t qa, qb, ia, ib;
};

Range range_of(const Plan& p, int w, int64_t B, int64_t N) {
  if (p.split_items) return {0, B, N * w / p.threads, N * (w + 1) / p.threads};
  return {B * w / p.threads, B * (w + 1) / p.threads, 0, N};
}

// One thread's sweep: query blocks x item tiles, each tile packed once per block.
void scan(const KernelOps& ops, const float* Q, const float* X, int64_t d, const Range& r,
          const Tiles& t, const ScanSink* sink) {
  AlignedFloats pack((t.item_tile + kPanel - 1) / kPanel * kPanel * d);
  for (int64_t qb0 = r.qa; qb0 < r.qb; qb0 += t.query_block) {
    const int64_t qb1 = std::min(qb0 + t.query_block, r.qb);
    for (int64_t t0 = r.ia; t0 < r.ib; t0 += t.item_tile) {
      const int64_t n = std::min(t.item_tile, r.ib - t0);
      ops.pack_rows(X, d, t0, n, r.ib, pack.get());
      ops.scan_tile(Q, qb0, qb1, d, pack.get(), t0, n, sink);
    }
  }
}

// ---------------------------------------------------------------- topk

struct TopkWorker {
  int64_t k, qa;
  const int64_t* ex_off;
  const int64_t* ex_ids;
  std::vector<float> val;   // (qb - qa) heaps of k
  std::vector<int64_t> id;
  std::vector<int64_t> size;
  std::vector<int64_t> ex_cur;  // next exclusion to compare, per query
  std::vector<float> thr;       // per global query: NaN until the heap is full
};

void topk_emit(void* ctx, int64_t q, int64_t first, const float* s, uint32_t mask) {
  TopkWorker& w = *static_cast<TopkWorker*>(ctx);
  const int64_t r = q - w.qa, k = w.k;
  float* val = w.val.data() + r * k;
  int64_t* id = w.id.data() + r * k;
  int64_t& n = w.size[size_t(r)];
  int64_t& c = w.ex_cur[size_t(r)];
  const int64_t ce = w.ex_off[q + 1];
  while (mask) {
    const int l = __builtin_ctz(mask);
    mask &= mask - 1;
    const int64_t i = first + l;
    if (n == k && !worse(val[0], id[0], s[l], i)) continue;
    // Exclusions are consulted only here, for the few that beat the heap.
    while (c < ce && w.ex_ids[c] < i) ++c;
    if (c < ce && w.ex_ids[c] == i) continue;
    if (n < k)
      heap_push(val, id, n++, s[l], i);
    else
      heap_replace_top(val, id, k, s[l], i);
  }
  w.thr[size_t(q)] = n == k ? val[0] : kNaN;
}

// Queries [q0, q1): the best k of all workers' heaps, padded with (-inf, -1).
void finalize_topk(const std::vector<TopkWorker>& workers, int64_t q0, int64_t q1, int64_t k,
                   float* out_scores, int64_t* out_ids) {
  std::vector<std::pair<float, int64_t>> all;
  const auto better = [](const std::pair<float, int64_t>& a, const std::pair<float, int64_t>& b) {
    return worse(b.first, b.second, a.first, a.second);
  };
  for (int64_t q = q0; q < q1; ++q) {
    all.clear();
    for (const TopkWorker& w : workers) {
      const int64_t r = q - w.qa;
      if (r < 0 || r >= int64_t(w.size.size())) continue;
      for (int64_t j = 0; j < w.size[size_t(r)]; ++j)
        all.emplace_back(w.val[size_t(r * k + j)], w.id[size_t(r * k + j)]);
    }
    const int64_t m = std::min<int64_t>(k, int64_t(all.size()));
    std::partial_sort(all.begin(), all.begin() + m, all.end(), better);
    for (int64_t j = 0; j < k; ++j) {
      out_scores[q * k + j] = j < m ? all[size_t(j)].first : -kInf;
      out_ids[q * k + j] = j < m ? all[size_t(j)].second : -1;
    }
  }
}

}  // namespace

void topk(const KernelOps& ops, const float* Q, int64_t B, const float* X, int64_t N, int64_t d,
          int64_t k, const int64_t* ex_off, const int64_t* ex_ids, float* out_scores,
          int64_t* out_ids, int num_threads, Tiles tiles) {
  if (B <= 0) return;
  const Plan p = plan(B, N, d, num_threads);
  const Tiles t = resolve(tiles, d);
  std::vector<TopkWorker> workers(size_t(p.threads));

  parallel_for(p.threads, [&](int wi) {
    const Range r = range_of(p, wi, B, N);
    TopkWorker& w = workers[size_t(wi)];
    const int64_t nq = r.qb - r.qa;
    w.k = k;
    w.qa = r.qa;
    w.ex_off = ex_off;
    w.ex_ids = ex_ids;
    w.val.resize(size_t(nq * k));
    w.id.resize(size_t(nq * k));
    w.size.assign(size_t(nq), 0);
    w.ex_cur.resize(size_t(nq));
    for (int64_t q = r.qa; q < r.qb; ++q)
      w.ex_cur[size_t(q - r.qa)] =
          std::lower_bound(ex_ids + ex_off[q], ex_ids + ex_off[q + 1], r.ia) - ex_ids;
    w.thr.assign(size_t(B), kNaN);
    const ScanSink sink{w.thr.data(), &w, topk_emit};
    scan(ops, Q, X, d, r, t, &sink);
  });

  // Merge the workers' heaps per query, best first. Query split: each query has one
  // owner, so owners finish their own queries in parallel. Item split: B is small.
  if (p.split_items) {
    finalize_topk(workers, 0, B, k, out_scores, out_ids);
  } else {
    parallel_for(p.threads, [&](int wi) {
      const Range r = range_of(p, wi, B, N);
      finalize_topk(workers, r.qa, r.qb, k, out_scores, out_ids);
    });
  }
}

// ---------------------------------------------------------------- rank_targets

namespace {

struct RankWorker {
  const int64_t* tg_off;
  const int64_t* tg_ids;
  const int64_t* ex_off;
  const int64_t* ex_ids;
  const uint32_t* skeys;       // per query: target keys, ascending
  std::vector<int64_t> bins;   // per query q: tg_off[q] + q .. tg_off[q+1] + q (T_q + 1 bins)
  std::vector<int64_t> tg_cur;
  std::vector<int64_t> ex_cur;
};

// Item i (not a target, not excluded) lands in bin c = #targets with key <= key_i:
// it ranks at or above exactly those targets (pessimistic ties).
void rank_emit(void* ctx, int64_t q, int64_t first, const float* s, uint32_t mask) {
  RankWorker& w = *static_cast<RankWorker*>(ctx);
  const int64_t t0 = w.tg_off[q], t1 = w.tg_off[q + 1];
  if (t0 == t1) return;
  const uint32_t kmin = w.skeys[t0];
  int64_t& tc = w.tg_cur[size_t(q)];
  int64_t& ec = w.ex_cur[size_t(q)];
  const int64_t ee = w.ex_off[q + 1];
  while (mask) {
    const int l = __builtin_ctz(mask);
    mask &= mask - 1;
    const uint32_t key = order_key(s[l]);
    if (key < kmin) continue;
    const int64_t i = first + l;
    while (tc < t1 && w.tg_ids[tc] < i) ++tc;
    if (tc < t1 && w.tg_ids[tc] == i) continue;
    while (ec < ee && w.ex_ids[ec] < i) ++ec;
    if (ec < ee && w.ex_ids[ec] == i) continue;
    const int64_t c = std::upper_bound(w.skeys + t0, w.skeys + t1, key) - (w.skeys + t0);
    ++w.bins[size_t(t0 + q + c)];
  }
}

}  // namespace

void rank_targets(const KernelOps& ops, const float* Q, int64_t B, const float* X, int64_t N,
                  int64_t d, const int64_t* tg_off, const int64_t* tg_ids, const int64_t* ex_off,
                  const int64_t* ex_ids, int64_t* out_ranks, int num_threads, Tiles tiles) {
  if (B <= 0) return;
  const int64_t T = tg_off[B];
  const Plan p = plan(B, N, d, num_threads);
  const Tiles t = resolve(tiles, d);

  // 1. Target scores (same kernel, so bit-identical to the scan's), their keys in
  //    ascending order, and each target's place among its query's targets.
  std::vector<uint32_t> skeys(static_cast<size_t>(T));
  std::vector<int64_t> ub(static_cast<size_t>(T)), pos(static_cast<size_t>(T));
  std::vector<float> thr(static_cast<size_t>(B));
  const int Tp = int(std::min<int64_t>(p.threads, std::max<int64_t>(1, B)));
  parallel_for(Tp, [&](int wi) {
    AlignedFloats scratch(kRowsScratch * std::max<int64_t>(d, 1));
    std::vector<float> sc;
    std::vector<int64_t> order;
    for (int64_t q = B * wi / Tp; q < B * (wi + 1) / Tp; ++q) {
      const int64_t t0 = tg_off[q], n = tg_off[q + 1] - t0;
      sc.resize(size_t(n));
      ops.score_rows(Q + q * d, X, d, tg_ids + t0, n, sc.data(), scratch.get());
      order.resize(size_t(n));
      for (int64_t j = 0; j < n; ++j) order[size_t(j)] = j;
      // best first: pos = number of targets ranked above
      std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return worse(sc[size_t(b)], tg_ids[t0 + b], sc[size_t(a)], tg_ids[t0 + a]);
      });
      for (int64_t j = 0; j < n; ++j) pos[size_t(t0 + order[size_t(j)])] = j;
      for (int64_t j = 0; j < n; ++j) skeys[size_t(t0 + j)] = order_key(sc[size_t(order[size_t(n - 1 - j)])]);
      for (int64_t j = 0; j < n; ++j)
        ub[size_t(t0 + j)] =
            std::upper_bound(skeys.begin() + t0, skeys.begin() + t0 + n, order_key(sc[size_t(j)])) -
            (skeys.begin() + t0);
      // Filter: only items scoring >= the lowest target can count. NaN target: all.
      thr[size_t(q)] = n == 0 ? kInf : sc[size_t(order[size_t(n - 1)])];
    }
  });

  // 2. One scan of the items, counting into per-worker bins.
  std::vector<RankWorker> workers(size_t(p.threads));
  parallel_for(p.threads, [&](int wi) {
    const Range r = range_of(p, wi, B, N);
    RankWorker& w = workers[size_t(wi)];
    w.tg_off = tg_off;
    w.tg_ids = tg_ids;
    w.ex_off = ex_off;
    w.ex_ids = ex_ids;
    w.skeys = skeys.data();
    w.bins.assign(size_t(T + B), 0);
    w.tg_cur.assign(size_t(B), 0);
    w.ex_cur.assign(size_t(B), 0);
    for (int64_t q = r.qa; q < r.qb; ++q) {
      w.tg_cur[size_t(q)] = std::lower_bound(tg_ids + tg_off[q], tg_ids + tg_off[q + 1], r.ia) - tg_ids;
      w.ex_cur[size_t(q)] = std::lower_bound(ex_ids + ex_off[q], ex_ids + ex_off[q + 1], r.ia) - ex_ids;
    }
    std::vector<float> wthr(thr);  // the sink may write thresholds; keep each worker's own
    const ScanSink sink{wthr.data(), &w, rank_emit};
    scan(ops, Q, X, d, r, t, &sink);
  });

  // 3. rank = 1 + #non-targets at or above + #targets above.
  std::vector<int64_t> suffix;
  for (int64_t q = 0; q < B; ++q) {
    const int64_t t0 = tg_off[q], n = tg_off[q + 1] - t0;
    suffix.assign(size_t(n + 2), 0);
    for (int64_t c = n; c >= 0; --c) {
      int64_t b = 0;
      for (const RankWorker& w : workers) b += w.bins[size_t(t0 + q + c)];
      suffix[size_t(c)] = suffix[size_t(c + 1)] + b;
    }
    for (int64_t j = 0; j < n; ++j)
      out_ranks[t0 + j] = 1 + suffix[size_t(ub[size_t(t0 + j)])] + pos[size_t(t0 + j)];
  }
}

// ---------------------------------------------------------------- score_candidates

void score_candidates(const KernelOps& ops, const float* q, const float* X, int64_t d,
                      const int64_t* ids, int64_t C, float* out) {
  // Reused across calls: this path is meant for many small calls.
  thread_local std::unique_ptr<AlignedFloats> scratch;
  thread_local int64_t cap = 0;
  const int64_t need = kRowsScratch * std::max<int64_t>(d, 1);
  if (need > cap) {
    scratch.reset();
    cap = 0;
    scratch = std::make_unique<AlignedFloats>(need);
    cap = need;
  }
  DefaultFpMode fp;
  ops.score_rows(q, X, d, ids, C, out, scratch->get());
}

}  // namespace rankers
