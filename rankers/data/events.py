"""The events of a shop log and their grades: view < cart < purchase. A module of its own so
that the service's event log (rankers.serving.events) shares it without importing pandas."""

DEFAULT_GRADES = {"view": 1.0, "cart": 2.0, "purchase": 3.0}
