"""Test helper: build and call the C++ loader in csrc/serving (CMake, against the torch wheel's libtorch).

The build directory is reused, so a rebuild after the first (about 30 s on 2 cores) only
relinks what changed; an exclusive file lock keeps concurrent builds (parallel test runs)
from trampling each other.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

SOURCE_DIR = Path(__file__).resolve().parents[2] / "csrc" / "serving"
BINARY = "rankers_recommend"


def missing_toolchain() -> Optional[str]:
    """Why the C++ loader cannot be built here (no cmake, no C++ compiler, no sources), or None."""
    if shutil.which("cmake") is None:
        return "cmake is not on PATH"
    if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c):
        return "no C++ compiler on PATH (c++, g++ or clang++; or set CXX)"
    if not (SOURCE_DIR / "CMakeLists.txt").is_file():
        return f"{SOURCE_DIR}/CMakeLists.txt not found: a source checkout is needed"
    return None


def build(build_dir: Union[str, Path], jobs: int = 2, timeout_s: float = 900.0) -> Path:
    """Configure and build ``rankers_recommend`` in ``build_dir``; returns the binary's path.

    Raises RuntimeError with the tail of CMake's output when a step fails.
    """
    import torch

    reason = missing_toolchain()
    if reason:
        raise RuntimeError(f"cannot build the C++ loader: {reason}")
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    steps = [["cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
              f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"],
             ["cmake", "--build", str(build_dir), "-j", str(jobs)]]
    with open(build_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                   f"{(proc.stdout + proc.stderr)[-4000:]}")
    binary = build_dir / BINARY
    if not binary.is_file():
        raise RuntimeError(f"the build finished but {binary} is missing")
    return binary


def recommend(binary: Union[str, Path], model_ts: Union[str, Path], user_id: str, k: int,
              features: Optional[Dict[str, Sequence[str]]] = None, exclude: Sequence[str] = (),
              timeout_s: float = 120.0) -> Tuple[List[str], List[float]]:
    """Run the C++ loader once -> (item ids, scores). RuntimeError carries its stderr."""
    cmd = [str(binary), str(model_ts), user_id, str(k)]
    for name, values in (features or {}).items():
        for v in values:
            cmd += ["--feature", f"{name}={v}"]
    for item in exclude:
        cmd += ["--exclude", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{BINARY} exited with {proc.returncode}: {proc.stderr.strip()}")
    ids, scores = [], []
    for line in proc.stdout.splitlines():
        item, score = line.split("\t")
        ids.append(item)
        scores.append(float(score))
    return ids, scores
