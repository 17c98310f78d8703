// Which kernel runs: chosen once per process from CPUID, or forced with
// RANKERS_KERNEL=scalar|avx2|avx512. Callers may also name one per call (tests).
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "scoring.h"

namespace rankers {
namespace {

struct Entry {
  const char* name;
  const KernelOps* ops;  // nullptr: not compiled for this architecture
  bool cpu_ok;
};

// Slowest first; the default is the last supported one.
std::vector<Entry> entries() {
  bool avx2 = false, avx512 = false;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the ymm/zmm state.
  avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("popcnt");
  avx512 = avx2 && __builtin_cpu_supports("avx512f");
#endif
  return {{"scalar", scalar_kernel(), true},
          {"avx2", avx2_kernel(), avx2},
          {"avx512", avx512_kernel(), avx512}};
}

std::string list(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

const KernelOps* find(const std::string& name, const char* what) {
  for (const Entry& e : entries()) {
    if (name != e.name) continue;
    if (e.ops && e.cpu_ok) return e.ops;
    throw std::invalid_argument(std::string(what) + "'" + name +
                                "' is not supported on this machine (available: " +
                                list(available_kernels()) + ")");
  }
  throw std::invalid_argument(std::string(what) + "'" + name +
                              "' is not a kernel (expected one of scalar, avx2, avx512)");
}

const KernelOps* resolve_default() {
  const char* env = std::getenv("RANKERS_KERNEL");
  if (env && *env) return find(env, "RANKERS_KERNEL=");
  const KernelOps* best = nullptr;
  for (const Entry& e : entries())
    if (e.ops && e.cpu_ok) best = e.ops;
  return best;
}

}  // namespace

std::vector<std::string> available_kernels() {
  std::vector<std::string> names;
  for (const Entry& e : entries())
    if (e.ops && e.cpu_ok) names.push_back(e.name);
  return names;
}

const KernelOps& kernel_by_name(const std::string& name) {
  if (!name.empty()) return *find(name, "kernel ");
  // Resolved once; a bad RANKERS_KERNEL throws here (and again on every call).
  static const KernelOps* const dflt = resolve_default();
  return *dflt;
}

}  // namespace rankers
