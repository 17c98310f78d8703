// rankers_recommend: load an exported model.ts with libtorch alone and print one user's top-k.
//
//   rankers_recommend MODEL_TS USER_ID [K] [--feature NAME=VALUE]... [--exclude ITEM_ID]...
//
// Calls Recommender.recommend(user_id, features, k, exclude) (rankers/artifact/runtime.py) and
// prints one "item_id<TAB>score" line per item, best first, scores with 9 significant digits.
// Repeating --feature for one NAME gives that feature several values; the reserved NAME
// "history" takes item ids. Exit status: 0 ok, 1 a request the model refuses (it raises
// ValueError for those and nothing else) or a model file that does not load, 2 usage,
// 3 a fault inside the model.
#include <torch/csrc/jit/runtime/jit_exception.h>
#include <torch/script.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

namespace {

int usage(const char* argv0) {
  std::cerr << "usage: " << argv0
            << " MODEL_TS USER_ID [K=10] [--feature NAME=VALUE]... [--exclude ITEM_ID]...\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> positional;
  c10::Dict<std::string, c10::List<std::string>> features;
  c10::List<std::string> exclude;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return usage(argv[0]);
    if (arg == "--feature" || arg == "--exclude") {
      if (i + 1 >= argc) {
        std::cerr << arg << " needs a value\n";
        return usage(argv[0]);
      }
      const std::string value = argv[++i];
      if (arg == "--exclude") {
        exclude.push_back(value);
        continue;
      }
      const auto eq = value.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "--feature wants NAME=VALUE, got '" << value << "'\n";
        return usage(argv[0]);
      }
      const std::string name = value.substr(0, eq);
      if (!features.contains(name)) features.insert(name, c10::List<std::string>());
      features.at(name).push_back(value.substr(eq + 1));
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() < 2 || positional.size() > 3) return usage(argv[0]);
  int64_t k = 10;
  if (positional.size() == 3) {
    char* end = nullptr;
    k = std::strtoll(positional[2].c_str(), &end, 10);
    if (end == positional[2].c_str() || *end != '\0' || k < 1) {
      std::cerr << "K must be an integer >= 1, got '" << positional[2] << "'\n";
      return 2;
    }
  }

  torch::jit::Module model;
  try {
    model = torch::jit::load(positional[0]);
  } catch (const c10::Error& e) {
    std::cerr << "error: cannot load " << positional[0] << ": " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: cannot load " << positional[0] << ": " << e.what() << "\n";
    return 1;
  }
  try {
    torch::NoGradGuard no_grad;
    model.eval();
    const auto out = model.get_method("recommend")({positional[1], features, k, exclude});
    const auto result = out.toTuple();
    const auto ids = result->elements()[0].toList();
    const auto scores = result->elements()[1].toList();
    for (size_t j = 0; j < ids.size(); ++j) {
      std::printf("%s\t%.9g\n", ids.get(j).toStringRef().c_str(), scores.get(j).toDouble());
    }
  } catch (const torch::jit::JITException& e) {
    // A `raise` in model.ts: its Python class says whose fault it is, its original message
    // is the one the user needs (what() adds both tracebacks).
    const bool refused = e.getPythonClassName() && *e.getPythonClassName() == "builtins.ValueError";
    std::cerr << "error: " << (e.getOriginalMsg() ? *e.getOriginalMsg() : std::string(e.what())) << "\n";
    return refused ? 1 : 3;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
