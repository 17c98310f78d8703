// Drivers: blocking, threads and what to keep. How scores are computed lives in
// the kernels (kernels.h); every score is bit-identical whatever the blocking or
// thread split, and every selection uses the total order of select.h, so results
// do not depend on either.
#include "scoring.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "parallel.h"
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
constexpr int64_t kMaxHeldPerThread = int64_t(1) << 22;  // heap entries (12 bytes each)
constexpr int64_t kTileBytes = 16 * 1024;  // packed item tile: stays in L1 while queries sweep it
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

// keep: result entries each thread holds per query when it scans all queries (k).
Plan plan(int64_t B, int64_t N, int64_t d, int64_t keep, int num_threads) {
  const double work = double(B) * double(N) * double(std::max<int64_t>(d, 1));
  const double useful = std::max(1.0, std::floor(work / double(kMinWorkPerThread)));
  int64_t T = int64_t(std::min(double(std::max(1, num_threads)), useful));
  // Small batches are memory bound: split the items so each is read once, unless
  // every thread holding heaps for all queries would take too much memory.
  const bool split_items = T > 1 && B < kQueriesPerThread * T && B * keep <= kMaxHeldPerThread;
  T = split_items ? std::min<int64_t>(T, std::max<int64_t>(1, N / kPanel)) : std::min<int64_t>(T, B);
  return {int(std::max<int64_t>(T, 1)), split_items};
}

// Worker w of T: its query range [qa, qb) and item range [ia, ib).
struct Range {
  int64_t qa, qb, ia, ib;
};

Range range_of(const Plan& p, int w, int64_t B, int64_t N) {
  if (p.split_items) return {0, B, N * w / p.threads, N * (w + 1) / p.threads};
  return {B * w / p.threads, B * (w + 1) / p.threads, 0, N};
}

// Where a scan reads its items: float32 rows, or bfloat16 rows (the upper 16 bits
// of a float32). bf16 is widened exactly to float32 before any arithmetic (by the
// kernel's pack_rows_bf16 / scan_rows_bf16, else widen_bf16 + pack_rows), so the
// scan is the float32 scan of the rounded items, identical on every kernel.
struct ItemSource {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
};

// bf16 rows first..first+n-1 of Xb -> float32 rows at out (exact: a 16-bit shift).
void widen_bf16(const uint16_t* Xb, int64_t d, int64_t first, int64_t n, float* out) {
  const uint16_t* src = Xb + first * d;
  for (int64_t i = 0, e = n * d; i < e; ++i) {
    const uint32_t u = uint32_t(src[i]) << 16;
    std::memcpy(out + i, &u, sizeof u);
  }
}

// One thread's sweep: query blocks x item tiles, each tile packed once per query
// block; visit(qb0, qb1, t0, n, tile) scores the packed tile.
template <class Visit>
void sweep(const KernelOps& ops, ItemSource src, int64_t d, const Range& r, const Tiles& t,
           const Visit& visit) {
  AlignedFloats tile((t.item_tile + kPanel - 1) / kPanel * kPanel * d);
  std::unique_ptr<AlignedFloats> rows;
  if (src.bf16 && !ops.pack_rows_bf16) rows = std::make_unique<AlignedFloats>(t.item_tile * d);
  for (int64_t qb0 = r.qa; qb0 < r.qb; qb0 += t.query_block) {
    const int64_t qb1 = std::min(qb0 + t.query_block, r.qb);
    for (int64_t t0 = r.ia; t0 < r.ib; t0 += t.item_tile) {
      const int64_t n = std::min(t.item_tile, r.ib - t0);
      if (src.bf16 && ops.pack_rows_bf16) {
        ops.pack_rows_bf16(src.bf16, d, t0, n, r.ib, tile.get());
      } else if (src.bf16) {
        widen_bf16(src.bf16, d, t0, n, rows->get());
        ops.pack_rows(rows->get(), d, 0, n, n, tile.get());
      } else {
        ops.pack_rows(src.f32, d, t0, n, r.ib, tile.get());
      }
      visit(qb0, qb1, t0, n, tile.get());
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

using Scored = std::pair<float, int64_t>;  // (score, item)

// Best first in the order of select.h.
bool better(const Scored& a, const Scored& b) { return worse(b.first, b.second, a.first, a.second); }

// The best k of `all` into out_scores/out_ids [k], padded with (-inf, -1).
void write_best(std::vector<Scored>& all, int64_t k, float* out_scores, int64_t* out_ids) {
  const int64_t m = std::min<int64_t>(k, int64_t(all.size()));
  std::partial_sort(all.begin(), all.begin() + m, all.end(), better);
  for (int64_t j = 0; j < k; ++j) {
    out_scores[j] = j < m ? all[size_t(j)].first : -kInf;
    out_ids[j] = j < m ? all[size_t(j)].second : -1;
  }
}

// Queries [q0, q1): the best k of the heaps of workers ws[0..nw), padded with (-inf, -1).
void finalize_topk(const TopkWorker* ws, size_t nw, int64_t q0, int64_t q1, int64_t k,
                   float* out_scores, int64_t* out_ids) {
  std::vector<Scored> all;
  for (int64_t q = q0; q < q1; ++q) {
    all.clear();
    for (const TopkWorker* w_ = ws; w_ != ws + nw; ++w_) {
      const TopkWorker& w = *w_;
      const int64_t r = q - w.qa;
      if (r < 0 || r >= int64_t(w.size.size())) continue;
      for (int64_t j = 0; j < w.size[size_t(r)]; ++j)
        all.emplace_back(w.val[size_t(r * k + j)], w.id[size_t(r * k + j)]);
    }
    write_best(all, k, out_scores + q * k, out_ids + q * k);
  }
}

void topk_scan(const KernelOps& ops, const float* Q, int64_t B, ItemSource X, int64_t N,
               int64_t d, int64_t k, const int64_t* ex_off, const int64_t* ex_ids,
               float* out_scores, int64_t* out_ids, int num_threads, Tiles tiles) {
  if (B <= 0) return;
  const Plan p = plan(B, N, d, k, num_threads);
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
    if (r.qb - r.qa == 1 && X.f32 && ops.scan_rows && tiles.item_tile <= 0) {
      // One query: read the rows directly (an explicit item_tile keeps the tiled path).
      ops.scan_rows(Q, r.qa, d, X.f32, r.ia, r.ib - r.ia, r.ib, &sink);
    } else if (r.qb - r.qa == 1 && X.bf16 && ops.scan_rows_bf16 && tiles.item_tile <= 0) {
      ops.scan_rows_bf16(Q, r.qa, d, X.bf16, r.ia, r.ib - r.ia, r.ib, &sink);
    } else {
      sweep(ops, X, d, r, t, [&](int64_t qb0, int64_t qb1, int64_t t0, int64_t n, const float* tile) {
        ops.scan_tile(Q, qb0, qb1, d, tile, t0, n, &sink);
      });
    }
    // Query split: this worker alone holds its queries' results.
    if (!p.split_items) finalize_topk(&w, 1, r.qa, r.qb, k, out_scores, out_ids);
  });
  // Item split (small B): merge every worker's heaps per query.
  if (p.split_items) finalize_topk(workers.data(), workers.size(), 0, B, k, out_scores, out_ids);
}

// ---------------------------------------------------------------- score offsets
//
// An item with an offset cannot be judged by the scan's filter (its base score may be
// below the running k-th best and its adjusted score above), so the scan skips offset
// items like exclusions, and merge_offsets lets them compete with their exact score
// plus offset afterwards: per query, O(k + offsets) work after the scan.

bool any_offsets(const Offsets& of, int64_t B) { return of.off != nullptr && of.off[B] > 0; }

// Per query, the union of two sorted id lists that are disjoint, as CSR (off: B + 1).
void merge_csr(int64_t B, const int64_t* a_off, const int64_t* a_ids, const int64_t* b_off,
               const int64_t* b_ids, std::vector<int64_t>& off, std::vector<int64_t>& ids) {
  off.assign(size_t(B + 1), 0);
  ids.resize(size_t(a_off[B] + b_off[B]));
  for (int64_t q = 0; q < B; ++q) {
    std::merge(a_ids + a_off[q], a_ids + a_off[q + 1], b_ids + b_off[q], b_ids + b_off[q + 1],
               ids.begin() + off[size_t(q)]);
    off[size_t(q + 1)] = off[size_t(q)] + (a_off[q + 1] - a_off[q]) + (b_off[q + 1] - b_off[q]);
  }
}

// out_scores/out_ids [B, k] hold each query's best k without its offset items; the
// offset items join with score(q, x) + offset and the best k are kept.
void merge_offsets(const KernelOps& ops, const float* Q, int64_t B, const float* X, int64_t d,
                   int64_t k, Offsets of, float* out_scores, int64_t* out_ids, int num_threads) {
  const int T = int(std::clamp<int64_t>(
      std::min<int64_t>(num_threads, of.off[B] * std::max<int64_t>(d, 1) / kMinWorkPerThread), 1, B));
  parallel_for(T, [&](int wi) {
    AlignedFloats scratch(kRowsScratch * std::max<int64_t>(d, 1));
    std::vector<float> s;
    std::vector<Scored> all;
    for (int64_t q = B * wi / T; q < B * (wi + 1) / T; ++q) {
      const int64_t o0 = of.off[q], m = of.off[q + 1] - o0;
      if (m == 0) continue;
      s.resize(size_t(m));
      ops.score_rows(Q + q * d, X, d, of.ids + o0, m, s.data(), scratch.get());
      all.clear();
      for (int64_t j = 0; j < k && out_ids[q * k + j] >= 0; ++j)
        all.emplace_back(out_scores[q * k + j], out_ids[q * k + j]);
      for (int64_t j = 0; j < m; ++j) all.emplace_back(s[size_t(j)] + of.vals[o0 + j], of.ids[o0 + j]);
      write_best(all, k, out_scores + q * k, out_ids + q * k);
    }
  });
}

// The scan's skip list: exclusions and offset items (disjoint by contract).
struct SkipList {
  std::vector<int64_t> off, ids;
  const int64_t* off_p;
  const int64_t* ids_p;
  SkipList(int64_t B, const int64_t* ex_off, const int64_t* ex_ids, const Offsets& of)
      : off_p(ex_off), ids_p(ex_ids) {
    if (!any_offsets(of, B)) return;
    merge_csr(B, ex_off, ex_ids, of.off, of.ids, off, ids);
    off_p = off.data();
    ids_p = ids.data();
  }
};

}  // namespace

void topk(const KernelOps& ops, const float* Q, int64_t B, const float* X, int64_t N, int64_t d,
          int64_t k, const int64_t* ex_off, const int64_t* ex_ids, Offsets of, float* out_scores,
          int64_t* out_ids, int num_threads, Tiles tiles) {
  if (B <= 0) return;
  const SkipList skip(B, ex_off, ex_ids, of);
  topk_scan(ops, Q, B, ItemSource{X, nullptr}, N, d, k, skip.off_p, skip.ids_p, out_scores,
            out_ids, num_threads, tiles);
  if (any_offsets(of, B)) merge_offsets(ops, Q, B, X, d, k, of, out_scores, out_ids, num_threads);
}

void topk_bf16(const KernelOps& ops, const float* Q, int64_t B, const float* X,
               const uint16_t* Xb, int64_t N, int64_t d, int64_t k, int64_t candidates,
               const int64_t* ex_off, const int64_t* ex_ids, Offsets of, float* out_scores,
               int64_t* out_ids, int num_threads, Tiles tiles) {
  if (B <= 0) return;
  const int64_t C = std::clamp<int64_t>(candidates, k, N);
  // 1. The scan over the bf16 copy keeps the best C per query (exclusions and offset
  //    items skipped).
  const SkipList skip(B, ex_off, ex_ids, of);
  std::vector<float> cs(size_t(B * C));
  std::vector<int64_t> ci(size_t(B * C));
  topk_scan(ops, Q, B, ItemSource{nullptr, Xb}, N, d, C, skip.off_p, skip.ids_p, cs.data(),
            ci.data(), num_threads, tiles);
  // 2. Exact float32 scores of those candidates; the best k of them.
  const int T = int(std::clamp<int64_t>(
      std::min<int64_t>(num_threads, B * C * d / kMinWorkPerThread), 1, B));
  parallel_for(T, [&](int wi) {
    AlignedFloats scratch(kRowsScratch * std::max<int64_t>(d, 1));
    std::vector<Scored> all;
    std::vector<float> s(static_cast<size_t>(C));
    for (int64_t q = B * wi / T; q < B * (wi + 1) / T; ++q) {
      const int64_t* ids = ci.data() + q * C;
      int64_t m = 0;  // found candidates come first, padding (-1) after
      while (m < C && ids[m] >= 0) ++m;
      ops.score_rows(Q + q * d, X, d, ids, m, s.data(), scratch.get());
      all.resize(size_t(m));
      for (int64_t j = 0; j < m; ++j) all[size_t(j)] = std::make_pair(s[size_t(j)], ids[j]);
      write_best(all, k, out_scores + q * k, out_ids + q * k);
    }
  });
  // 3. Offset items compete with their exact score plus offset.
  if (any_offsets(of, B)) merge_offsets(ops, Q, B, X, d, k, of, out_scores, out_ids, num_threads);
}

void to_bf16(const float* X, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t v;
    std::memcpy(&v, X + i, sizeof v);
    if ((v & 0x7FFFFFFFu) > 0x7F800000u)  // NaN stays a (quiet) NaN
      out[i] = uint16_t((v >> 16) | 0x0040u);
    else  // round to nearest even; overflow rounds to inf as it should
      out[i] = uint16_t((v + 0x7FFFu + ((v >> 16) & 1u)) >> 16);
  }
}

// ---------------------------------------------------------------- rank_targets
//
// With s the exact scores and s' = s + offset (s' = s for items without one):
// rank_t = 1 + #{items j: s_j >= s'_t}           counted in the scan, over all items
//            - #{excluded e: s_e >= s'_t}         from the exclusions' own scores
//            - #{targets t': s_t' >= s'_t}        (t itself included)
//            - #{other offset items o: s_o >= s'_t}
//            + #{other offset items o: s'_o >= s'_t}
//            + #{targets ranked above t by s'}
// with >= in the NaN-aware order of select.h. Counting every item and correcting
// for the few excluded/target/offset ones keeps the scan free of per-item lookups.
// The scan compares each 16 scores with the query's target scores in ascending order
// and stops at the first one none reaches, so high-ranked targets cost one compare.

namespace {

// NaN-aware "number of keys >= k" in an ascending key array.
int64_t count_ge(const std::vector<uint32_t>& asc, uint32_t k) {
  return int64_t(asc.end() - std::lower_bound(asc.begin(), asc.end(), k));
}

}  // namespace

void rank_targets(const KernelOps& ops, const float* Q, int64_t B, const float* X, int64_t N,
                  int64_t d, const int64_t* tg_off, const int64_t* tg_ids, const int64_t* ex_off,
                  const int64_t* ex_ids, Offsets of, int64_t* out_ranks, int num_threads,
                  Tiles tiles) {
  if (B <= 0) return;
  const int64_t T = tg_off[B];
  const Plan p = plan(B, N, d, 1, num_threads);
  const Tiles t = resolve(tiles, d);

  // 1. Per query: target scores s' ascending (NaN last: the scan's compare never
  //    passes them, so counting stops there), each target's slot in that list,
  //    and the correction terms.
  std::vector<float> thr(static_cast<size_t>(T));
  std::vector<int64_t> slot(static_cast<size_t>(T)), fixed(static_cast<size_t>(T));
  std::vector<char> is_nan(static_cast<size_t>(T));
  const int Tq = int(std::min<int64_t>(p.threads, B));
  parallel_for(Tq, [&](int wi) {
    AlignedFloats scratch(kRowsScratch * std::max<int64_t>(d, 1));
    std::vector<float> ts, es, os, ov;
    std::vector<int64_t> ord, oid;
    std::vector<uint32_t> tkeys, ekeys, okeys, okeys_adj;
    for (int64_t q = B * wi / Tq; q < B * (wi + 1) / Tq; ++q) {
      const int64_t t0 = tg_off[q], nt = tg_off[q + 1] - t0;
      const int64_t e0 = ex_off[q], ne = ex_off[q + 1] - e0;
      const int64_t f0 = of.off ? of.off[q] : 0, nf = of.off ? of.off[q + 1] - f0 : 0;
      if (nt == 0) continue;
      ts.resize(size_t(nt));
      es.resize(size_t(ne));
      ops.score_rows(Q + q * d, X, d, tg_ids + t0, nt, ts.data(), scratch.get());
      ops.score_rows(Q + q * d, X, d, ex_ids + e0, ne, es.data(), scratch.get());
      // the scan counts the targets' exact scores: keys before their offsets
      tkeys.resize(size_t(nt));
      for (int64_t j = 0; j < nt; ++j) tkeys[size_t(j)] = order_key(ts[size_t(j)]);
      // offsets: a target's moves its own score; the others' are corrected for
      oid.clear();
      ov.clear();
      for (int64_t j = 0; j < nf; ++j) {
        const int64_t item = of.ids[f0 + j];
        const int64_t* at = std::lower_bound(tg_ids + t0, tg_ids + t0 + nt, item);
        if (at != tg_ids + t0 + nt && *at == item) {
          ts[size_t(at - (tg_ids + t0))] += of.vals[f0 + j];
        } else {
          oid.push_back(item);
          ov.push_back(of.vals[f0 + j]);
        }
      }
      os.resize(oid.size());
      ops.score_rows(Q + q * d, X, d, oid.data(), int64_t(oid.size()), os.data(), scratch.get());
      okeys.resize(oid.size());
      okeys_adj.resize(oid.size());
      for (size_t j = 0; j < oid.size(); ++j) {
        okeys[j] = order_key(os[j]);
        okeys_adj[j] = order_key(os[j] + ov[j]);
      }
      ord.resize(size_t(nt));
      for (int64_t j = 0; j < nt; ++j) ord[size_t(j)] = j;
      // best first (select.h order): position = number of targets ranked above
      std::sort(ord.begin(), ord.end(), [&](int64_t a, int64_t b) {
        return worse(ts[size_t(b)], tg_ids[t0 + b], ts[size_t(a)], tg_ids[t0 + a]);
      });
      // worst first = ascending, NaNs (worst) first; the scan wants them last
      const int64_t nan = std::count_if(ts.begin(), ts.end(), [](float v) { return v != v; });
      for (int64_t r = 0; r < nt; ++r) {
        const int64_t j = ord[size_t(nt - 1 - r)];
        const int64_t o = r < nan ? nt - nan + r : r - nan;
        thr[size_t(t0 + o)] = ts[size_t(j)];
        slot[size_t(t0 + j)] = t0 + o;
        is_nan[size_t(t0 + j)] = r < nan;
      }
      ekeys.resize(size_t(ne));
      for (int64_t j = 0; j < ne; ++j) ekeys[size_t(j)] = order_key(es[size_t(j)]);
      std::sort(tkeys.begin(), tkeys.end());
      std::sort(ekeys.begin(), ekeys.end());
      std::sort(okeys.begin(), okeys.end());
      std::sort(okeys_adj.begin(), okeys_adj.end());
      for (int64_t r = 0; r < nt; ++r) {
        const int64_t j = ord[size_t(r)];
        const uint32_t k = order_key(ts[size_t(j)]);
        fixed[size_t(t0 + j)] = r - count_ge(tkeys, k) - count_ge(ekeys, k) - count_ge(okeys, k) +
                                count_ge(okeys_adj, k);
      }
    }
  });

  // 2. One scan of the items per query, counting per worker.
  std::vector<std::vector<int64_t>> counts(size_t(p.threads));
  parallel_for(p.threads, [&](int wi) {
    const Range r = range_of(p, wi, B, N);
    std::vector<int64_t>& cnt = counts[size_t(wi)];
    cnt.assign(size_t(T), 0);
    const CountJob job{tg_off, thr.data(), cnt.data()};
    sweep(ops, ItemSource{X, nullptr}, d, r, t,
          [&](int64_t qb0, int64_t qb1, int64_t, int64_t n, const float* tile) {
      ops.count_tile(Q, qb0, qb1, d, tile, n, &job);
    });
  });

  // 3. A NaN target ranks below every item: all N count.
  for (int64_t i = 0; i < T; ++i) {
    int64_t ge = N;
    if (!is_nan[size_t(i)]) {
      ge = 0;
      for (const auto& c : counts) ge += c[size_t(slot[size_t(i)])];
    }
    out_ranks[i] = 1 + ge + fixed[size_t(i)];
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
