"""Export a trained checkpoint: `python scripts/export.py CHECKPOINT OUT_DIR` -> OUT_DIR/model.ts + metadata.json."""
import argparse

from rankers.export import export_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("checkpoint", help="a .ckpt written by scripts/train.py (e.g. <run>/checkpoints/last.ckpt)")
    ap.add_argument("out_dir", help="export directory (replaced atomically if it exists)")
    a = ap.parse_args()
    print(export_checkpoint(a.checkpoint, a.out_dir))


if __name__ == "__main__":
    main()
