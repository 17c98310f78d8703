// Software prefetch of a row-major item stream, shared by the x86 kernels.
#pragma once

#include <cstdint>

#include <immintrin.h>

#include "kernels.h"

namespace rankers {

// Streams the nr rows that come kPrefetchBytes after row `row` of a row-major matrix
// X: size [*, d], stopping at row `limit`, into L2. The 16-row transposes read rows side
// by side, which the hardware prefetchers do not follow well; into L1 the rows would
// evict the tile in use. _mm_prefetch is baseline x86-64, so this carries no target
// attribute and inlines into any kernel; internal linkage keeps the linker from merging
// copies across the per-ISA units (see kernels.h).
template <typename T>
static inline __attribute__((always_inline)) void prefetch_ahead(const T* X, int64_t d, int64_t row, int64_t nr, int64_t limit) {
  const int64_t pf0 = row + kPrefetchBytes / (int64_t(sizeof(T)) * d) + 1;
  const int64_t pf1 = pf0 + nr < limit ? pf0 + nr : limit;
  const char* b = reinterpret_cast<const char*>(X + pf0 * d);
  for (int64_t off = 0; off < (pf1 - pf0) * d * int64_t(sizeof(T)); off += 64) _mm_prefetch(b + off, _MM_HINT_T1);
}

}  // namespace rankers
