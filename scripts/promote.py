"""Offline gate and deploy: `python scripts/promote.py CHALLENGER_EXPORT --champion deploy/current --data LOGS`.
The same as `rankers promote` (rankers/promote.py)."""
from rankers.promote import main

if __name__ == "__main__":
    main()
