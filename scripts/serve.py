"""Serve an export over REST: `python scripts/serve.py model_path=PATH [port=8080 challenger_path=PATH ...]`.
The same as `rankers serve` (rankers/serve.py)."""
from rankers.serve import main

if __name__ == "__main__":
    main()
