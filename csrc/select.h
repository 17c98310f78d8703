// What to keep: the result order and a bounded heap (after faiss utils/Heap.h).
// Generic code only; included by the drivers, never by the SIMD kernel units.
#pragma once

#include <cstdint>
#include <cstring>

namespace rankers {

// The one order every result uses: higher score first; NaN below every number
// (all NaNs equal); -0 == +0. As an unsigned key: NaN -> 0, otherwise the usual
// sign-flip that makes IEEE floats sort as unsigned integers. Integer operations
// only, so the caller's FP mode (denormals-are-zero) cannot change the order.
inline uint32_t order_key(float s) {
  uint32_t u;
  std::memcpy(&u, &s, sizeof u);
  const uint32_t mag = u & 0x7FFFFFFFu;
  if (mag > 0x7F800000u) return 0;          // NaN
  if (mag == 0) return 0x80000000u;         // -0 -> +0
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// a ranks after b: lower key, or same key and higher index (ties go to the lower index).
inline bool worse(float sa, int64_t ia, float sb, int64_t ib) {
  const uint32_t ka = order_key(sa), kb = order_key(sb);
  return ka < kb || (ka == kb && ia > ib);
}

// Binary heap on parallel arrays val/id with the worst kept entry at [0], so a
// candidate is accepted or rejected against [0] alone.
inline void heap_sift_down(float* val, int64_t* id, int64_t n, int64_t pos, float s, int64_t i) {
  for (;;) {
    int64_t c = 2 * pos + 1;
    if (c >= n) break;
    if (c + 1 < n && worse(val[c + 1], id[c + 1], val[c], id[c])) ++c;
    if (!worse(val[c], id[c], s, i)) break;
    val[pos] = val[c];
    id[pos] = id[c];
    pos = c;
  }
  val[pos] = s;
  id[pos] = i;
}

// Heap of n entries -> n + 1 entries.
inline void heap_push(float* val, int64_t* id, int64_t n, float s, int64_t i) {
  int64_t pos = n;
  while (pos > 0) {
    const int64_t parent = (pos - 1) / 2;
    if (!worse(s, i, val[parent], id[parent])) break;
    val[pos] = val[parent];
    id[pos] = id[parent];
    pos = parent;
  }
  val[pos] = s;
  id[pos] = i;
}

// Drops the worst entry [0] of a full heap of n entries and inserts (s, i).
inline void heap_replace_top(float* val, int64_t* id, int64_t n, float s, int64_t i) {
  heap_sift_down(val, id, n, 0, s, i);
}

}  // namespace rankers
