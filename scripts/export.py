"""Export a trained checkpoint: `python scripts/export.py CHECKPOINT OUT_DIR` -> OUT_DIR/model.ts, model.pt2,
lookups.json, metadata.json. The same as `rankers export` (rankers/export.py)."""
from rankers.export import main

if __name__ == "__main__":
    main()
