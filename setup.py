"""Build rankers and its C++ core `rankers._C` (pybind11, no libtorch link)."""
import re
from glob import glob
from pathlib import Path

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import find_packages, setup

ParallelCompile("RANKERS_BUILD_JOBS", default=2).install()

# The version lives in rankers/__init__.py alone (read, not imported: the extension is not built yet).
VERSION = re.search(r'^__version__ = "([^"]+)"', (Path(__file__).parent / "rankers" / "__init__.py").read_text(), re.M).group(1)

ext_modules = [
    Pybind11Extension(
        "rankers._C",
        sorted(glob("csrc/*.cpp")),
        include_dirs=["csrc"],
        depends=sorted(glob("csrc/*.h")),  # rebuild when a header changes
        cxx_std=17,
        # -O3 for the scan loops; never -ffast-math or -march=native (see csrc/README).
        extra_compile_args=["-O3"],
        define_macros=[("RANKERS_VERSION", f'"{VERSION}"')],  # rankers._C.__version__: the one version string
    )
]


README = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")

setup(
    name="rankers",
    version=VERSION,
    description="Pairwise-weighted neural ranking for product recommendations",
    long_description=README,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Science/Research",
        "Intended Audience :: Developers",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: C++",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Information Analysis",
        "Typing :: Typed",
    ],
    packages=find_packages(include=["rankers", "rankers.*"]),
    # the Hydra configs ship inside the package (rankers/conf, read as pkg://rankers.conf)
    package_data={"rankers": ["py.typed"], "rankers.conf": ["*.yaml", "*/*.yaml"]},
    entry_points={"console_scripts": ["rankers = rankers.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        # The CPU wheel is installed first by README/.ci; a range keeps pip from pulling a CUDA build.
        "torch>=2.3,<2.15",
        "numpy>=1.24",
        "pandas>=2.0",
        "pyarrow>=14",  # Parquet logs and tables, a file or a directory of them
        "hydra-core>=1.3,<1.4",
        "pytorch-lightning>=2.2,<2.7",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "matplotlib>=3.7"],  # matplotlib: the benchmarks' plots
        # benchmarks/*.py (the peers they compare with, LightFM and implicit, stay out: see ../shared/bench)
        "bench": ["matplotlib>=3.7"],
        # rankers tune (scripts/tune.py): Optuna's Gaussian-process sampler, which needs scipy
        "tune": ["optuna>=4", "scipy>=1.10", "matplotlib>=3.7"],
        # scripts/serve.py (rankers.serving.app); httpx is FastAPI's TestClient, for the tests.
        "serve": ["fastapi>=0.110", "uvicorn[standard]>=0.29", "prometheus-client>=0.20", "httpx>=0.27"],
    },
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    zip_safe=False,
)
