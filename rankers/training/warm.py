"""Warm starts: a new run that begins from a previous model (``init_from=``).

The new data's vocabularies grow from the previous model's (``rankers.data.features.fit_vocabulary``
with ``base``): a known user, item or feature value keeps its token, a new one gets a row after
the previous model's last. The weights are mapped row by row (``TwoTower.row_spaces`` says what
each table's rows index):
- a known token or item keeps its trained row;
- a new token starts from its field's out-of-vocabulary row, so at step 0 the warm model
  scores a new user or item exactly as the previous model did (from its features);
- a new item's history row keeps the fresh initialisation; every other parameter (MLPs, the
  Scorer's weights) is copied; the popularity prior's counts are the new data's.
The optimiser's state (``init_optimizer=carry``, from a checkpoint) is mapped the same way, new
rows starting from zero state; ``fresh`` (the default) starts the optimiser anew.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from rankers.artifact.schema import CHECKPOINT, ExportBundle
from rankers.data.dataset import RankingData, WarmStart, positions
from rankers.model import OOV, TwoTower
from rankers.model.tokenizer import Vocabulary

SHAPE_KEYS = ("dim", "user_mlp", "item_mlp")  # model keys a warm start must keep (they shape the weights)
OPTIMIZER_STATES = ("fresh", "carry")


@dataclass
class Previous:
    """The model a warm start begins from.

    hparams: the TwoTower's (``net.hparams``); state: its state_dict; bundle: its vocabularies,
    catalogue and users; optimizer: the optimiser's state_dict (a Lightning checkpoint's; None
    from an export); path: the file read.
    """

    hparams: dict
    state: Dict[str, torch.Tensor]
    bundle: ExportBundle
    optimizer: Optional[dict]
    path: Path

    def warm_start(self) -> WarmStart:
        b = self.bundle
        return WarmStart(b.user_vocab, b.item_vocab, np.asarray(b.item_ids, dtype=object),
                         np.asarray(b.user_ids, dtype=object), b.history)


def checkpoint_file(path) -> Path:
    """The file ``init_from`` names: an export directory's checkpoint.pt, a run directory's
    checkpoints/last.ckpt (``best_checkpoint`` reads on to the run's best), or a checkpoint file."""
    p = Path(str(path))
    if p.is_file():
        return p
    if p.is_dir():
        for c in (p / CHECKPOINT, p / "checkpoints" / "last.ckpt", p / "export" / CHECKPOINT):
            if c.is_file():
                return c
        raise FileNotFoundError(f"init_from={path}: neither an export directory with {CHECKPOINT} (exports "
                                "written before warm starts lack it: export the run's checkpoint again) nor a run "
                                "directory with checkpoints/last.ckpt")
    raise FileNotFoundError(f"init_from={path}: no such export directory, run directory or checkpoint file")


def load_previous(path) -> Previous:
    """Read the model ``init_from`` names (``checkpoint_file``). A checkpoint is a pickle: warm
    start from your own runs and exports only."""
    f = checkpoint_file(path)
    ckpt = torch.load(f, map_location="cpu", weights_only=False)
    best = best_checkpoint(ckpt) if Path(str(path)).is_dir() else None
    if best is not None:  # a run directory: its final model is the best epoch's, not the last one's
        f, ckpt = best, torch.load(best, map_location="cpu", weights_only=False)
    extra = ckpt.get("rankers") if isinstance(ckpt, dict) else None
    if not extra or not extra.get("bundle"):
        raise ValueError(f"init_from={path}: {f} is not a rankers checkpoint (no 'rankers' bundle)")
    state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    opts = ckpt.get("optimizer_states") or []
    return Previous(dict(extra["net_hparams"]), state, ExportBundle.from_state(extra["bundle"]),
                    opts[0] if opts else None, f)


def best_checkpoint(last: dict) -> Optional[Path]:
    """The best checkpoint a run's last.ckpt names (its monitored ModelCheckpoint's
    ``best_model_path``), when that file is still there; else None."""
    for key, st in (last.get("callbacks") or {}).items() if isinstance(last, dict) else ():
        best = st.get("best_model_path") if key.startswith("ModelCheckpoint") and isinstance(st, dict) else None
        if best and st.get("monitor") and Path(best).is_file():
            return Path(best)
    return None


def check_model(model_cfg: Mapping, prev: Previous) -> None:
    """The new model's config (plain ``model`` keys) against the previous model's: the keys
    that shape the weights (``SHAPE_KEYS``) must agree; a ValueError names them."""
    diff = [f"model.{k}={model_cfg.get(k)!r} (the previous model's: {prev.hparams.get(k)!r})"
            for k in SHAPE_KEYS if _plain(model_cfg.get(k)) != _plain(prev.hparams.get(k))]
    if diff:
        raise ValueError(f"init_from={prev.path}: {', '.join(diff)}; a warm start keeps the model's shape "
                         "(train from scratch to change it)")


def _plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def token_rows(new: Vocabulary, old: Vocabulary) -> np.ndarray:
    """For each token of ``new`` (grown from ``old``), the row of the previous table it starts
    from -> int64 [new.n_tokens]: itself for ``old``'s tokens, its field's OOV token for new ones."""
    rows = np.arange(new.n_tokens, dtype=np.int64)
    for name in new.fields:
        toks = np.fromiter(new.vocab[name].values(), dtype=np.int64)
        rows[toks[toks >= old.n_tokens]] = old.vocab[name][OOV]
    return rows


def row_maps(data: RankingData, prev: Previous) -> Dict[str, np.ndarray]:
    """Row space (``TwoTower.row_spaces``) -> the previous row of each new row (-1: none) [rows]."""
    items = positions(np.asarray(data.item_ids, str), np.asarray(prev.bundle.item_ids, str))
    return {"user_tokens": token_rows(data.user_vocab, prev.bundle.user_vocab),
            "item_tokens": token_rows(data.item_vocab, prev.bundle.item_vocab),
            "items+1": np.concatenate([[0], np.where(items >= 0, items + 1, -1)]).astype(np.int64)}


def _mapped(fresh: torch.Tensor, old: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """``fresh`` [R, ...] with row r replaced by ``old[rows[r]]`` where rows[r] >= 0."""
    out = fresh.detach().clone()
    have = torch.from_numpy(rows >= 0)
    out[have] = old[torch.from_numpy(rows[rows >= 0])].to(out.dtype)
    return out


def warm_state(net: TwoTower, prev: Previous, data: RankingData,
               maps: Optional[Dict[str, np.ndarray]] = None) -> Dict[str, torch.Tensor]:
    """The state_dict that starts ``net`` (built for ``data``) from ``prev`` (``maps``:
    ``row_maps(data, prev)``, computed here when not given)."""
    maps, spaces = maps if maps is not None else row_maps(data, prev), net.row_spaces()
    out = {}
    for name, fresh in net.state_dict().items():
        old = prev.state.get(name)
        if name in spaces:
            out[name] = _mapped(fresh, old, maps[spaces[name]])
        elif name == "scorer.log_popularity" or old is None:
            out[name] = fresh  # the new data's counts; a term the previous model lacked starts fresh
        elif old.shape != fresh.shape:
            raise ValueError(f"init_from={prev.path}: parameter {name} has shape {tuple(old.shape)} there, "
                             f"{tuple(fresh.shape)} here")
        else:
            out[name] = old.clone()
    return out


def warm_optimizer_state(net: TwoTower, prev: Previous, data: RankingData,
                         maps: Optional[Dict[str, np.ndarray]] = None) -> Dict[int, dict]:
    """The previous optimiser's per-parameter state mapped to ``net``'s rows (new rows: zeros)
    -> {parameter index in ``net.parameters()`` order: state}."""
    if prev.optimizer is None:
        raise ValueError(f"init_optimizer=carry: {prev.path} holds no optimiser state (an export's "
                         "checkpoint.pt has the weights only); give the run's checkpoint "
                         "(<run>/checkpoints/last.ckpt) or use init_optimizer=fresh")
    maps, spaces = maps if maps is not None else row_maps(data, prev), net.row_spaces()
    out: Dict[int, dict] = {}
    for i, (name, p) in enumerate(net.named_parameters()):
        st = prev.optimizer["state"].get(i)
        if st is None:
            continue
        old_shape = prev.state[name].shape
        out[i] = {k: (_mapped(torch.zeros_like(p), v, maps[spaces[name]]) if name in spaces else v.clone())
                  if torch.is_tensor(v) and v.shape == old_shape and v.dim() > 0 else v
                  for k, v in st.items()}
    return out
