"""Small random-weight exports shared by the serving tests (no training: about 2 s each)."""
import json
import shutil
from pathlib import Path

import pytest

from rankers.serving.synthetic import random_export

N_ITEMS = 300
N_USERS = 60


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Two valid exports A and B (different weights) and a broken copy of A, by name."""
    root = tmp_path_factory.mktemp("exports")
    a = random_export(root / "a", n_items=N_ITEMS, n_users=N_USERS, seed=0)
    b = random_export(root / "b", n_items=N_ITEMS, n_users=N_USERS, seed=1)
    broken = root / "broken"
    shutil.copytree(a, broken)
    (broken / "model.ts").write_bytes(b"not a TorchScript archive")
    meta = json.loads((broken / "metadata.json").read_text())
    meta["version"] = "broken-" + meta["version"]
    (broken / "metadata.json").write_text(json.dumps(meta))
    return {"a": a, "b": b, "broken": broken}


def version_of(export_dir: Path) -> str:
    return json.loads((Path(export_dir) / "metadata.json").read_text())["version"]
