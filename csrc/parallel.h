// Threads and floating-point mode shared by the drivers (scoring.cpp, sparse_rows.cpp).
#pragma once

#include <algorithm>
#include <cfenv>
#include <exception>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

namespace rankers {
namespace detail {

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
inline void parallel_for(int T, const F& f) {
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

}  // namespace detail
using detail::DefaultFpMode;
using detail::parallel_for;
}  // namespace rankers
