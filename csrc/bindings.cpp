// Python bindings of the scoring core (rankers._C). Glue only: unpack arrays, drop
// the GIL, call scoring.h. Private API: rankers/retrieval/core.py validates, converts and
// allocates; arrays must already be C-contiguous of the exact dtype (noconvert), so
// an output can never be a silent temporary copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "linear.h"
#include "pair_loss.h"
#include "scoring.h"
#include "sparse_rows.h"

namespace py = pybind11;
using F32 = py::array_t<float, py::array::c_style>;
using I64 = py::array_t<int64_t, py::array::c_style>;
using U16 = py::array_t<uint16_t, py::array::c_style>;

namespace {

// Score offsets as CSR (offsets [B+1], ids, values); an empty id list means none.
rankers::Offsets offsets(const I64& off, const I64& ids, const F32& vals) {
  if (ids.size() == 0) return {};
  return {off.data(), ids.data(), vals.data()};
}

}  // namespace

#ifndef RANKERS_VERSION
#error "RANKERS_VERSION is defined by setup.py (from rankers/__init__.py)"
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "Compiled scoring core of rankers (private; use rankers.retrieval).";
  m.attr("__version__") = RANKERS_VERSION;  // the package's, fixed at build time

  m.def(
      "kernel_name", [] { return std::string(rankers::kernel_by_name("").name); },
      "Name of the kernel used by default in this process: RANKERS_KERNEL if set, "
      "else the best one the CPU supports. Raises ValueError for a bad RANKERS_KERNEL.");

  m.def("available_kernels", &rankers::available_kernels,
        "Kernels this build can run on this CPU, slowest first (always starts with 'scalar').");

  m.def(
      "topk",
      [](const F32& Q, const F32& X, int64_t k, const I64& ex_off, const I64& ex_ids,
         const I64& of_off, const I64& of_ids, const F32& of_vals, F32& out_scores, I64& out_ids,
         int num_threads, const std::string& kernel, int64_t item_tile, int64_t query_block) {
        const rankers::KernelOps& ops = rankers::kernel_by_name(kernel);
        float* os = out_scores.mutable_data();
        int64_t* oi = out_ids.mutable_data();
        py::gil_scoped_release nogil;
        rankers::topk(ops, Q.data(), Q.shape(0), X.data(), X.shape(0), X.shape(1), k,
                      ex_off.data(), ex_ids.data(), offsets(of_off, of_ids, of_vals), os, oi,
                      num_threads, rankers::Tiles{item_tile, query_block});
      },
      py::arg("queries").noconvert(), py::arg("items").noconvert(), py::arg("k"),
      py::arg("ex_offsets").noconvert(), py::arg("ex_ids").noconvert(),
      py::arg("of_offsets").noconvert(), py::arg("of_ids").noconvert(),
      py::arg("of_values").noconvert(),
      py::arg("out_scores").noconvert(), py::arg("out_indices").noconvert(),
      py::arg("num_threads"), py::arg("kernel") = "", py::arg("item_tile") = 0,
      py::arg("query_block") = 0,
      "Exact top-k by inner product into out_scores/out_indices [B, k]. queries [B, d], "
      "items [N, d] float32; exclusions as CSR (ex_offsets [B+1], ex_ids sorted unique per "
      "query); score offsets as CSR (of_offsets [B+1], of_ids sorted unique per query and "
      "disjoint from the exclusions, of_values float32; empty of_ids: none). kernel '' = "
      "default; item_tile/query_block 0 = default. Inputs unchecked.");

  m.def(
      "topk_bf16",
      [](const F32& Q, const F32& X, const U16& Xb, int64_t k, int64_t candidates,
         const I64& ex_off, const I64& ex_ids, const I64& of_off, const I64& of_ids,
         const F32& of_vals, F32& out_scores, I64& out_ids, int num_threads,
         const std::string& kernel, int64_t item_tile, int64_t query_block) {
        const rankers::KernelOps& ops = rankers::kernel_by_name(kernel);
        float* os = out_scores.mutable_data();
        int64_t* oi = out_ids.mutable_data();
        py::gil_scoped_release nogil;
        rankers::topk_bf16(ops, Q.data(), Q.shape(0), X.data(), Xb.data(), X.shape(0),
                           X.shape(1), k, candidates, ex_off.data(), ex_ids.data(),
                           offsets(of_off, of_ids, of_vals), os, oi, num_threads,
                           rankers::Tiles{item_tile, query_block});
      },
      py::arg("queries").noconvert(), py::arg("items").noconvert(),
      py::arg("items_bf16").noconvert(), py::arg("k"), py::arg("candidates"),
      py::arg("ex_offsets").noconvert(), py::arg("ex_ids").noconvert(),
      py::arg("of_offsets").noconvert(), py::arg("of_ids").noconvert(),
      py::arg("of_values").noconvert(),
      py::arg("out_scores").noconvert(), py::arg("out_indices").noconvert(),
      py::arg("num_threads"), py::arg("kernel") = "", py::arg("item_tile") = 0,
      py::arg("query_block") = 0,
      "Approximate top-k: scan items_bf16 (uint16 [N, d], bfloat16 bits of items) for the "
      "best `candidates` per query, re-score them exactly from items, keep the best k "
      "(offset items are always scored exactly). Otherwise as topk. Inputs unchecked.");

  m.def(
      "to_bf16",
      [](const F32& X, U16& out) {
        uint16_t* o = out.mutable_data();
        const int64_t n = X.size();
        py::gil_scoped_release nogil;
        rankers::to_bf16(X.data(), n, o);
      },
      py::arg("x").noconvert(), py::arg("out").noconvert(),
      "out = bfloat16 bits of x (round to nearest even), same size. Inputs unchecked.");

  m.def(
      "rank_targets",
      [](const F32& Q, const F32& X, const I64& tg_off, const I64& tg_ids, const I64& ex_off,
         const I64& ex_ids, const I64& of_off, const I64& of_ids, const F32& of_vals,
         I64& out_ranks, int num_threads, const std::string& kernel, int64_t item_tile,
         int64_t query_block) {
        const rankers::KernelOps& ops = rankers::kernel_by_name(kernel);
        int64_t* orank = out_ranks.mutable_data();
        py::gil_scoped_release nogil;
        rankers::rank_targets(ops, Q.data(), Q.shape(0), X.data(), X.shape(0), X.shape(1),
                              tg_off.data(), tg_ids.data(), ex_off.data(), ex_ids.data(),
                              offsets(of_off, of_ids, of_vals), orank, num_threads,
                              rankers::Tiles{item_tile, query_block});
      },
      py::arg("queries").noconvert(), py::arg("items").noconvert(),
      py::arg("tg_offsets").noconvert(), py::arg("tg_ids").noconvert(),
      py::arg("ex_offsets").noconvert(), py::arg("ex_ids").noconvert(),
      py::arg("of_offsets").noconvert(), py::arg("of_ids").noconvert(),
      py::arg("of_values").noconvert(),
      py::arg("out_ranks").noconvert(), py::arg("num_threads"), py::arg("kernel") = "",
      py::arg("item_tile") = 0, py::arg("query_block") = 0,
      "Pessimistic 1-based rank of each target among non-excluded items into out_ranks "
      "(aligned with tg_ids), by scores with the offsets applied. Targets and exclusions as "
      "CSR, sorted unique per query, disjoint; offsets as for topk. Inputs unchecked.");

  m.def(
      "score_candidates",
      [](const F32& q, const F32& X, const I64& ids, F32& out, const std::string& kernel) {
        const rankers::KernelOps& ops = rankers::kernel_by_name(kernel);
        float* o = out.mutable_data();
        py::gil_scoped_release nogil;
        rankers::score_candidates(ops, q.data(), X.data(), X.shape(1), ids.data(), ids.shape(0), o);
      },
      py::arg("query").noconvert(), py::arg("items").noconvert(),
      py::arg("candidate_ids").noconvert(), py::arg("out").noconvert(), py::arg("kernel") = "",
      "out[c] = <query, items[candidate_ids[c]]> (float32, the kernels' exact score). "
      "query [d], items [N, d], candidate_ids int64 [C] in range. Inputs unchecked.");

  m.def(
      "adagrad_rows",
      [](F32& param, F32& state, const I64& rows, const I64& order, const F32& values, float lr,
         float eps, int num_threads) {
        float* p = param.mutable_data();
        float* s = state.mutable_data();
        py::gil_scoped_release nogil;
        rankers::adagrad_rows(p, s, param.shape(1), rows.data(), order.data(), values.data(),
                              rows.shape(0), lr, eps, num_threads);
      },
      py::arg("param").noconvert(), py::arg("state").noconvert(), py::arg("rows").noconvert(),
      py::arg("order").noconvert(), py::arg("values").noconvert(), py::arg("lr"), py::arg("eps"),
      py::arg("num_threads"),
      "In-place Adagrad on the rows of param/state [N, d] for a row-sparse gradient: rows [M] "
      "sorted, order [M] (values[order[m]] belongs to rows[m]), values [M, d]. Equal to "
      "torch.optim.Adagrad's sparse update. Inputs unchecked.");

  m.def(
      "pair_loss_rows",
      [](const F32& scores, const F32& pos_score, const I64& row_start, const F32& pos_grade,
         const F32& pos_weight, const I64& graded_start, const I64& graded_col,
         const F32& graded_grade, const F32& col_weight, int loss, int weighting, float margin,
         float warp_margin,
         int64_t n_items, py::array_t<double, py::array::c_style>& row_loss,
         py::array_t<double, py::array::c_style>& row_weight, F32& grad_scores, F32& grad_pos,
         int num_threads) {
        double* rl = row_loss.mutable_data();
        double* rw = row_weight.mutable_data();
        float* gs = grad_scores.mutable_data();
        float* gp = grad_pos.mutable_data();
        py::gil_scoped_release nogil;
        rankers::pair_loss_rows(scores.data(), scores.shape(0), scores.shape(1), pos_score.data(),
                                row_start.data(), pos_grade.data(), pos_weight.data(),
                                graded_start.data(), graded_col.data(), graded_grade.data(),
                                col_weight.size() ? col_weight.data() : nullptr,
                                static_cast<rankers::PairLoss>(loss),
                                static_cast<rankers::PairWeighting>(weighting), margin, warp_margin,
                                n_items, rl, rw, gs, gp, num_threads);
      },
      py::arg("scores").noconvert(), py::arg("pos_score").noconvert(),
      py::arg("row_start").noconvert(), py::arg("pos_grade").noconvert(),
      py::arg("pos_weight").noconvert(), py::arg("graded_start").noconvert(),
      py::arg("graded_col").noconvert(), py::arg("graded_grade").noconvert(),
      py::arg("col_weight").noconvert(), py::arg("loss"),
      py::arg("weighting"), py::arg("margin"), py::arg("warp_margin"), py::arg("n_items"),
      py::arg("row_loss").noconvert(), py::arg("row_weight").noconvert(),
      py::arg("grad_scores").noconvert(), py::arg("grad_pos").noconvert(), py::arg("num_threads"),
      "Pairwise loss of positives against every column of their row (see pair_loss.h): "
      "per-row sums of w*loss and w, gradients of sum(w*loss); col_weight [K] importance "
      "weights of the columns, or empty for none. Inputs unchecked.");

  m.def(
      "linear_scores",
      [](const I64& offsets, const I64& index, const F32& value, const F32& weight, F32& out) {
        float* o = out.mutable_data();
        py::gil_scoped_release nogil;
        rankers::linear_scores(offsets.data(), index.data(), value.data(), out.size(), weight.data(), o);
      },
      py::arg("offsets").noconvert(), py::arg("index").noconvert(), py::arg("value").noconvert(),
      py::arg("weight").noconvert(), py::arg("out").noconvert(),
      "out[r] = sum of value * weight[index] over row r's stored features (CSR rows; see "
      "linear.h). Inputs unchecked.");

  m.def(
      "bag_backward",
      [](const I64& tokens, const F32& weights, const F32& grad_out, int64_t padding, F32& grad,
         int num_threads) {
        float* g = grad.mutable_data();
        py::gil_scoped_release nogil;
        rankers::bag_backward(tokens.data(), weights.data(), grad_out.data(), tokens.shape(0),
                              tokens.shape(1), grad.shape(1), padding, g, grad.shape(0), num_threads);
      },
      py::arg("tokens").noconvert(), py::arg("weights").noconvert(),
      py::arg("grad_out").noconvert(), py::arg("padding"), py::arg("grad").noconvert(),
      py::arg("num_threads"),
      "grad[tokens[b, t]] += weights[b, t] * grad_out[b] (token != padding): the table gradient "
      "of a weighted sum bag. tokens [B, T] in [0, N), weights [B, T], grad_out [B, d], grad "
      "[N, d]. Inputs unchecked.");
}
