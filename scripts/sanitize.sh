#!/usr/bin/env bash
# Build rankers._C with AddressSanitizer and UndefinedBehaviorSanitizer, in a directory of its
# own (the checkout's build is untouched), and run the tests of the C++ core against it:
# the kernels' hypothesis tests, the pair loss, the bag and sparse-row passes.
#
#   bash scripts/sanitize.sh                 # the core's tests
#   bash scripts/sanitize.sh tests/retrieval # or the tests given
#
# Exit status: pytest's; any sanitizer finding aborts the run (halt_on_error) and fails it.
# Needs gcc or clang with libasan and libubsan (on Debian/Ubuntu they come with gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CXX_BIN=${CXX:-c++}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/rankers-sanitize.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

ASAN_LIB=$("$CXX_BIN" -print-file-name=libasan.so)
UBSAN_LIB=$("$CXX_BIN" -print-file-name=libubsan.so)
for lib in "$ASAN_LIB" "$UBSAN_LIB"; do
  if [ ! -e "$lib" ]; then
    echo "sanitize: $CXX_BIN has no $(basename "$lib") (install the compiler's sanitizer runtimes)" >&2
    exit 2
  fi
done

if ! "$PY" -c "import pybind11, setuptools" 2>/dev/null; then
  echo "sanitize: needs the build requirements in this environment: pip install 'setuptools>=68' 'pybind11>=2.12'" >&2
  exit 2
fi
echo "sanitize: building rankers._C with -fsanitize=address,undefined into $OUT"
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
CFLAGS="$FLAGS" CXXFLAGS="$FLAGS" LDFLAGS="-fsanitize=address,undefined" \
  "$PY" setup.py -q build_ext --build-temp "$OUT/tmp" --build-lib "$OUT/lib" >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 2; }
# the package, with the sanitized extension in place of the checkout's, first on the path
cp -r rankers "$OUT/pkg"
rm -f "$OUT"/pkg/_C*.so
cp "$OUT"/lib/rankers/_C*.so "$OUT/pkg/"
mkdir -p "$OUT/path" && mv "$OUT/pkg" "$OUT/path/rankers"

TESTS=("$@")
if [ ${#TESTS[@]} -eq 0 ]; then
  TESTS=(tests/retrieval tests/losses/test_rows.py tests/model/test_layers.py tests/training/test_optim.py)
fi
# Python itself is not instrumented: preload the runtimes; its own allocations are not ours
# to judge (detect_leaks=0), every finding in our code stops the run.
export LD_PRELOAD="$ASAN_LIB $UBSAN_LIB"
# Reports go to files (pytest holds stderr and would lose them in the abort), shown below.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$OUT/report"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$OUT/report"
# The package is imported from the sanitized copy before anything else can find the
# checkout's (the working directory and an editable install both point there).
cat >"$OUT/path/sitecustomize.py" <<PYEOF
import importlib.util, sys
_spec = importlib.util.spec_from_file_location("rankers", "$OUT/path/rankers/__init__.py",
                                               submodule_search_locations=["$OUT/path/rankers"])
sys.modules["rankers"] = _mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
PYEOF
export PYTHONPATH="$OUT/path${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PYEOF'
import rankers._C as C
assert "rankers-sanitize" in C.__file__, f"not the sanitized build: {C.__file__}"
print("sanitize: testing", C.__file__)
PYEOF
status=0
"$PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" || status=$?
if ls "$OUT"/report.* >/dev/null 2>&1; then
  echo "sanitize: FINDINGS (pytest exit status $status):"
  cat "$OUT"/report.*
  exit 1
fi
[ "$status" -eq 0 ] && echo "sanitize: 0 findings"
exit "$status"
