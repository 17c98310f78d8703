"""``python -m rankers COMMAND ...``: the ``rankers`` command (rankers.cli)."""
from rankers.cli import main

raise SystemExit(main())
