"""A/B read-out: `python scripts/ab_report.py --impressions impressions.jsonl --events events.csv`.
The same as `rankers ab-report` (rankers/ab_report.py)."""
from rankers.ab_report import main

if __name__ == "__main__":
    main()
