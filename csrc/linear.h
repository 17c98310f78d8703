// Scores of the paper's sparse linear model (rankers.model.linear) for candidate lists.
#pragma once

#include <cstdint>

namespace rankers {

// out[r] = sum over the stored features of row r of value * weight[index], rows as CSR:
//   offsets [R + 1] (offsets[0] = 0, non-decreasing, offsets[R] = nnz); index [nnz] in [0, F);
//   value [nnz]; weight [F]; out [R].  Summed in float32, in the stored order, as the
//   Python model's index_add does per row. Inputs unchecked (rankers.retrieval.core validates).
void linear_scores(const int64_t* offsets, const int64_t* index, const float* value, int64_t R,
                   const float* weight, float* out);

}  // namespace rankers
