"""Export a trained checkpoint: `python scripts/export.py CHECKPOINT OUT_DIR` -> OUT_DIR/model.ts, model.pt2,
lookups.json, metadata.json."""
import argparse

from rankers.artifact.schema import SCANS
from rankers.artifact.writer import export_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", help="a .ckpt written by scripts/train.py (e.g. <run>/checkpoints/last.ckpt)")
    ap.add_argument("out_dir", help="export directory (replaced atomically if it exists)")
    ap.add_argument("--scan", choices=SCANS, default="auto",
                    help="model.ts's recommend scan (auto: fp16 with exact re-scoring from 16,384 items on)")
    a = ap.parse_args()
    print(export_checkpoint(a.checkpoint, a.out_dir, scan=a.scan))


if __name__ == "__main__":
    main()
