"""Export a trained checkpoint: ``rankers export CHECKPOINT OUT_DIR`` -> OUT_DIR/model.ts,
model.pt2, lookups.json, metadata.json; also ``python -m rankers.export`` and
``python scripts/export.py``."""
import argparse
from typing import Optional, Sequence

from rankers.artifact.schema import SCANS
from rankers.artifact.writer import export_checkpoint


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="rankers export", description=__doc__)
    ap.add_argument("checkpoint", help="a .ckpt written by rankers train (e.g. <run>/checkpoints/last.ckpt)")
    ap.add_argument("out_dir", help="export directory (replaced atomically if it exists)")
    ap.add_argument("--scan", choices=SCANS, default="auto",
                    help="model.ts's recommend scan (auto: fp16 with exact re-scoring from 16,384 items on)")
    a = ap.parse_args(argv)
    print(export_checkpoint(a.checkpoint, a.out_dir, scan=a.scan))


if __name__ == "__main__":
    main()
