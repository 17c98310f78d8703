// Python bindings of the scoring core (rankers._C). Glue only: unpack arrays, drop
// the GIL, call scoring.h. Private API: rankers/retrieval/core.py validates, converts and
// allocates; arrays must already be C-contiguous of the exact dtype (noconvert), so
// an output can never be a silent temporary copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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

PYBIND11_MODULE(_C, m) {
  m.doc() = "Compiled scoring core of rankers (private; use rankers.retrieval).";

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
}
