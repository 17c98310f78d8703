// Row-sparse optimizer updates for embedding tables (rankers.training.optim).
//
// A sparse gradient of a [N, d] table is a list of (row, values[d]) entries, rows
// repeated when a batch touches a row more than once. torch's sparse Adagrad first
// coalesces the list (a sort and a segmented sum in separate passes), then applies
// four sparse-tensor ops; on CPU each pass re-reads the rows, and index ops loop per
// row. Here one pass sums each row's entries and updates its state and weights.
#pragma once

#include <cstdint>

namespace rankers {

// Adagrad on the rows of one table, in place, equal to torch.optim.Adagrad's update
// (lr_decay = 0, weight_decay = 0) for the coalesced gradient:
//   g = sum of the entries of row r;  state[r] += g * g;
//   param[r] -= lr * g / (sqrt(state[r]) + eps)
//   param, state: N * d.  rows: M row ids, sorted ascending, in [0, N).
//   order: M indices into values (values[order[m]] is the entry of rows[m]; a stable
//   sort keeps duplicates summed in the order they were produced).  values: M * d.
void adagrad_rows(float* param, float* state, int64_t d, const int64_t* rows,
                  const int64_t* order, const float* values, int64_t M, float lr, float eps,
                  int num_threads);

// The gradient of a weighted sum bag (nn.EmbeddingBag, mode "sum", per-sample weights) with
// respect to its table, accumulated into grad (N * d, zeroed by the caller):
//   grad[tokens[b, t]] += weights[b, t] * grad_out[b]   for every entry whose token != padding.
// torch's CPU backward sorts the tokens and walks them per unique row; here one pass over
// the entries. Threads own disjoint ranges of table rows, so no two write one row.
//   tokens: B * T ids in [0, N); weights: B * T; grad_out: B * d.
void bag_backward(const int64_t* tokens, const float* weights, const float* grad_out, int64_t B,
                  int64_t T, int64_t d, int64_t padding, float* grad, int64_t N, int num_threads);

}  // namespace rankers
