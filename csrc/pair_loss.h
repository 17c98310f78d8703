// The pairwise objective of positives against every column of their row, forward and
// gradient in two passes per positive (rankers.losses.fused).
//
// Training scores a row (a user, with some of its positives left out of its history) against
// K columns: the whole catalogue, or negatives shared by a batch. In torch the loss of P
// positives against K columns is a chain of [P, K] temporaries (masks, violators, weights,
// losses and their gradients: ~30 passes over memory); here each positive reads its row's
// scores twice (count violators, then add loss and gradient) and writes one gradient row.
#pragma once

#include <cstdint>

namespace rankers {

enum class PairLoss : int { kHinge = 0, kLogistic = 1 };
enum class PairWeighting : int { kUniform = 0, kWarp = 1 };

// For every positive p (in row r = the row whose range [row_start[r], row_start[r+1]) holds p)
// and every column j with grade(r, j) < pos_grade[p] (a valid pair):
//   uniform: w = pos_weight[p];
//   warp:    w = pos_weight[p] * H(R) / n_viol for violators (s_rj + warp_margin > s_p), else 0,
//            R = floor((n_items - 1) * n_viol / n_valid), H the harmonic number;
//   loss:    hinge max(0, margin - (s_p - s_rj)), logistic softplus(margin - (s_p - s_rj)).
// Writes, per row, the sums of w * loss and of w (row_loss, row_weight, doubles), and the
// gradient of sum(w * loss) with respect to scores (grad_scores, R x K, overwritten) and to
// pos_score (grad_pos, P). grade(r, j) is 0 unless (graded_col, graded_grade) in the range
// [graded_start[r], graded_start[r+1]) names column j.
// col_weight [K] (nullptr: all 1): importance weights of columns drawn from a non-uniform
// proposal (rankers.training.sampling): every count above becomes a weighted sum (n_valid,
// n_viol, R = floor((n_items - 1) * min(1, n_viol / n_valid))), and each pair's w and loss
// are multiplied by its column's weight.
// The weights are rankers/losses/weighting.py's (tests/losses/test_rows.py checks them equal):
// a change to one is a change to both.
// scores: R x K row-major. Inputs unchecked (columns in [0, K), ranges ascending).
void pair_loss_rows(const float* scores, int64_t R, int64_t K, const float* pos_score,
                    const int64_t* row_start, const float* pos_grade, const float* pos_weight,
                    const int64_t* graded_start, const int64_t* graded_col,
                    const float* graded_grade, const float* col_weight, PairLoss loss,
                    PairWeighting weighting, float margin, float warp_margin, int64_t n_items,
                    double* row_loss, double* row_weight, float* grad_scores, float* grad_pos,
                    int num_threads);

}  // namespace rankers
