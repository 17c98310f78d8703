"""Writing an export: ``model.ts``, ``model.pt2``, ``lookups.json`` and ``metadata.json`` in one
directory, written to a temporary directory beside the target and renamed into place, so a
loader never sees half a model.

``export(net, bundle, out_dir)`` takes a trained TwoTower and its ExportBundle;
``export_checkpoint`` rebuilds both from a Lightning checkpoint of ``scripts/train.py``.
"""
from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import json
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any, Tuple, Union

import numpy as np
import torch

from rankers.artifact.pt2 import INPUTS, OUTPUTS, TopKScorer, baked_k, export_program, write_lookups
from rankers.artifact.runtime import Recommender
from rankers.artifact.scan import scan_plan
from rankers.artifact.schema import CHECKPOINT, FORMAT, HISTORY_FIELD, PT2_K, ExportBundle
from rankers.artifact.users import UserResolver
from rankers.model import Tokenizer, TwoTower


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON via a temp file + rename, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def owner_tag() -> str:
    """Host and pid in the names of temporary directories (``<prefix><host>-<pid>-...``), so
    that those of a process that died (kill -9 during an export, a killed service) can be told
    from those of one still running, and removed (``remove_dead_owners``)."""
    return f"{socket.gethostname()}-{os.getpid()}-"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_dead_owners(parent: Path, prefixes) -> list:
    """Remove the directories in ``parent`` named ``<prefix><owner_tag>...`` (a prefix of
    ``prefixes``) whose process on this host no longer runs; returns what was removed."""
    heads = [f"{p}{socket.gethostname()}-" for p in prefixes]
    gone = []
    if not Path(parent).is_dir():
        return gone
    for p in Path(parent).iterdir():
        head = next((h for h in heads if p.name.startswith(h)), None)
        pid = p.name[len(head):].split("-", 1)[0] if head else ""
        if pid.isdigit() and p.is_dir() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


def remove_orphans(target: Path) -> list:
    """Remove the temporary ``.<name>.tmp-*`` / ``.<name>.old-*`` directories beside ``target``
    left by writers on this host that are no longer running; returns what was removed."""
    target = Path(target)
    return remove_dead_owners(target.parent, [f".{target.name}.tmp-", f".{target.name}.old-"])


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished directory into place; an existing one is swapped out, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{owner_tag()}{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out_dir: Union[str, Path]):
    """A temporary directory beside ``out_dir`` to write into; it replaces ``out_dir`` when the
    block ends, and is removed if the block raises (a reader never sees half an export)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{owner_tag()}", dir=out_dir.parent))
    try:
        yield tmp
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def item_table(net: TwoTower, bundle: ExportBundle) -> Tuple[torch.Tensor, torch.Tensor]:
    """The catalogue's item vectors [N, D] and biases [N] (the Scorer's item terms included)."""
    return net.eval().catalogue_table(torch.as_tensor(bundle.item_tokens), torch.as_tensor(bundle.item_weights))


def build_recommender(net: TwoTower, bundle: ExportBundle, version: str, scan: str = "auto") -> torch.jit.ScriptModule:
    """Script the model.ts module of a trained TwoTower (``scan``: see ``scan_plan``)."""
    v, b = item_table(net, bundle)
    users = UserResolver(Tokenizer(bundle.user_vocab), bundle.user_ids, bundle.user_tokens, bundle.user_weights,
                         bundle.history.offsets, bundle.history.values, bundle.item_ids)
    rec = Recommender(users, copy.deepcopy(net.user_tower).eval(), copy.deepcopy(net.scorer).eval(), v, b,
                      bundle.item_ids, version, scan_plan(v, b, scan))
    rec.requires_grad_(False)  # served, not trained: calls outside no_grad build no graph
    return torch.jit.script(rec.eval())


def build_program(net: TwoTower, bundle: ExportBundle, k: int = PT2_K) -> "torch.export.ExportedProgram":
    """The model.pt2 program of a trained TwoTower: k is capped at the catalogue size."""
    v, b = item_table(net, bundle)
    return export_program(TopKScorer(net.user_tower, copy.deepcopy(net.scorer).eval().requires_grad_(False), v, b,
                                     baked_k(k, len(bundle.item_ids))))


def export(net: TwoTower, bundle: ExportBundle, out_dir: Union[str, Path], config: Union[dict, None] = None,
           metrics: Union[dict, None] = None, pt2: bool = True, pt2_k: int = PT2_K, scan: str = "auto") -> Path:
    """Write ``out_dir/{model.ts, metadata.json}`` and, with ``pt2``, ``model.pt2`` +
    ``lookups.json`` (top-``pt2_k`` graph, capped at the catalogue), all atomically. ``scan``: the precision of
    model.ts's recommend scan (``scan_plan``). Returns out_dir."""
    now = _dt.datetime.now(_dt.timezone.utc)
    version = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:12]}"
    meta = {
        "format": FORMAT, "version": version, "created": now.isoformat(),
        "n_items": len(bundle.item_ids), "n_known_users": len(bundle.user_ids), "dim": int(net.dim),
        "user_features": bundle.user_vocab.describe(), "item_features": bundle.item_vocab.describe(),
        "reserved_features": {HISTORY_FIELD: "list of item ids the user interacted with (replaces stored history)"},
        "model": dict(net.hparams), "config": config or {}, "metrics": metrics or {},
        "torch_version": torch.__version__, "pt2": None,
    }
    with atomic_dir(out_dir) as tmp:
        module = build_recommender(net, bundle, version, scan)
        module.save(str(tmp / "model.ts"))
        meta["scan"] = {"precision": module.scan_precision,
                        "exact": "fp16 candidates are re-scored in float32; the top-k equals an exact scan's"
                        if module.approximate else "float32 scan"}
        if pt2:
            k = baked_k(pt2_k, len(bundle.item_ids))
            torch.export.save(build_program(net, bundle, k), str(tmp / "model.pt2"))
            write_lookups(tmp, bundle, k)
            meta["pt2"] = {"file": "model.pt2", "lookups": "lookups.json", "k": k, "inputs": INPUTS,
                           "outputs": OUTPUTS}
        # the trained weights in a checkpoint's layout (load_checkpoint reads it): a later run
        # warm-starts from the export alone (init_from=), the run directory need not be kept
        torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                    "rankers": {"net_hparams": dict(net.hparams), "bundle": bundle.state()}}, tmp / CHECKPOINT)
        meta["checkpoint"] = CHECKPOINT
        with open(tmp / "metadata.json", "w") as f:
            json.dump(meta, f, indent=2, default=_json_default)
    return out_dir


def load_checkpoint(checkpoint_path: Union[str, Path]) -> Tuple[TwoTower, ExportBundle]:
    """Rebuild the trained TwoTower and its ExportBundle from a Lightning checkpoint."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    extra = ckpt.get("rankers")
    if not extra or not extra.get("bundle"):
        raise ValueError(f"{path} is not a rankers checkpoint (no 'rankers' bundle); "
                         "it must come from rankers.training.train / scripts/train.py")
    hp = dict(extra["net_hparams"])
    net = TwoTower(hp.pop("n_user_tokens"), hp.pop("n_item_tokens"), hp.pop("n_items"), **hp)
    state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    return net.eval(), ExportBundle.from_state(extra["bundle"])


def export_checkpoint(checkpoint_path: Union[str, Path], out_dir: Union[str, Path], scan: str = "auto") -> Path:
    """Export a checkpoint; the run's config.yaml and metrics.json are attached when found beside it."""
    net, bundle = load_checkpoint(checkpoint_path)
    run_dir = Path(checkpoint_path).resolve().parent.parent
    config, metrics = {}, {}
    if (run_dir / "config.yaml").is_file():
        import yaml
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    if (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    return export(net, bundle, out_dir, config=config, metrics=metrics, scan=scan)
