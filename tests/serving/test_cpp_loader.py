"""The C++ loader (csrc/serving) built with CMake against the torch wheel's libtorch.

The build directory is build/serving-cpp in the checkout, reused between runs: the first
build takes about 30 s on 2 cores, later ones only check that nothing changed.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.serving import cpp_loader as cpp
from rankers.artifact.testing import random_export

pytestmark = pytest.mark.slow
BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "serving-cpp"


@pytest.fixture(scope="module")
def binary():
    reason = cpp.missing_toolchain()
    if reason:
        pytest.skip(f"C++ loader not built: {reason}")
    return cpp.build(BUILD_DIR)


@pytest.mark.parametrize("user, features, exclude", [
    ("u4", {}, []),
    ("u4", {"country": ["IT"]}, ["i0", "i10"]),
    ("a-new-user", {"segment": ["budget"], "history": ["i1", "i2"]}, []),
])
def test_cpp_recommend_matches_python(exports, binary, user, features, exclude):
    model_ts = exports["a"] / "model.ts"
    ids, scores = cpp.recommend(binary, model_ts, user, 12, features, exclude)
    ref_ids, ref_scores = torch.jit.load(str(model_ts)).recommend(user, features, 12, exclude)
    assert ids == ref_ids
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6, atol=1e-6)


def test_cpp_errors_are_clear(exports, binary):
    # a refused request: exit 1 with the model's own message, no TorchScript traceback
    with pytest.raises(RuntimeError, match=r"exited with 1: error: unknown user feature 'shoe'; known: [^\n]*$"):
        cpp.recommend(binary, exports["a"] / "model.ts", "u1", 3, {"shoe": ["1"]})
    with pytest.raises(RuntimeError, match=r"exited with 1: error: numeric feature 'age' got 'x', which is not a number$"):
        cpp.recommend(binary, exports["a"] / "model.ts", "u1", 3, {"age": ["x"]})
    with pytest.raises(RuntimeError, match="exited with 2"):
        cpp.recommend(binary, exports["a"] / "model.ts", "u1", 0)
    with pytest.raises(RuntimeError, match="exited with 1"):
        cpp.recommend(binary, exports["a"] / "nothing.ts", "u1", 3)


def test_cpp_loads_an_export_with_the_fp16_scan(tmp_path, binary):
    # the packed fp16 table is a TorchScript custom class: libtorch must rebuild it on load
    d = random_export(tmp_path / "fp16", n_items=2000, n_users=20, dim=16, pt2=False, scan="fp16")
    ids, scores = cpp.recommend(binary, d / "model.ts", "u3", 20, {}, ["i5"])
    ref_ids, ref_scores = torch.jit.load(str(d / "model.ts")).recommend("u3", {}, 20, ["i5"])
    assert ids == ref_ids and "i5" not in ids
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6, atol=1e-6)
