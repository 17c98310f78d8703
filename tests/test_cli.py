"""The installed command: `rankers {train,export,serve}` (and python -m rankers), the configs
inside the package, a user's own config directory."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import rankers
import rankers._C
from rankers.cli import check_searchpath, main, searchpath_dirs

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_string():
    assert rankers._C.__version__ == rankers.__version__


def test_an_unknown_command_lists_the_commands(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'; the commands are train, export, serve" in err
    assert main([]) == 2 and "usage: rankers COMMAND" in capsys.readouterr().out


def test_a_missing_user_config_directory_is_named(tmp_path):
    assert searchpath_dirs(["hydra.searchpath=[file://a,pkg://x.y,file:///abs/b]", "seed=1"]) == ["a", "/abs/b"]
    check_searchpath([f"hydra.searchpath=[file://{tmp_path}]"])  # exists: fine
    with pytest.raises(SystemExit, match=r"the config directory '.*nope' does not exist"):
        check_searchpath([f"hydra.searchpath=[file://{tmp_path / 'nope'}]"])


@pytest.mark.slow
def test_train_runs_from_anywhere_with_the_packaged_and_a_users_own_configs(tmp_path):
    # from a directory that is not the checkout: the configs come from the package, a preset
    # from the user's own directory
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "tiny.yaml").write_text(
        "# @package _global_\ntrainer:\n  max_epochs: 1\ndata:\n  source:\n    n_users: 200\n    n_items: 80\n")
    run = subprocess.run([sys.executable, "-m", "rankers", "train", "hydra.searchpath=[file://mine]", "experiment=tiny",
                          "export=false", "trainer.enable_progress_bar=false", "hydra.run.dir=run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1
    bad = subprocess.run([sys.executable, "-m", "rankers", "train", "experiment=tinyy"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "Could not find 'experiment/tinyy'" in bad.stderr
    assert "Available options in 'experiment'" in bad.stderr and "ml100k" in bad.stderr
