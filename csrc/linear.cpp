#include "linear.h"

namespace rankers {

void linear_scores(const int64_t* offsets, const int64_t* index, const float* value, int64_t R,
                   const float* weight, float* out) {
  // One pass over the stored features; a 500-candidate list of a sparse model is a few
  // thousand multiply-adds, so threads would cost more than they save.
  for (int64_t r = 0; r < R; ++r) {
    float s = 0.0f;
    for (int64_t j = offsets[r]; j < offsets[r + 1]; ++j) s += value[j] * weight[index[j]];
    out[r] = s;
  }
}

}  // namespace rankers
