"""Bayesian tuning of ElasticRank: `python scripts/tune.py --name NAME --trials 30 -- experiment=elasticrank ...`.
The same as `rankers tune` (rankers/tune.py)."""
from rankers.tune import main

if __name__ == "__main__":
    main()
