"""The production loop, simulated end to end: `python scripts/simulate.py --workdir outputs/sim`.
The same as `rankers simulate` (rankers/simulate.py)."""
from rankers.simulate import main

if __name__ == "__main__":
    main()
