"""The events of a shop log and their grades: view < cart < purchase. A module of its own so
that the service's event log (rankers.serving.events) shares it without importing pandas."""

DEFAULT_GRADES = {"view": 1.0, "cart": 2.0, "purchase": 3.0}
# The service's event log (rankers.serving.events): its header, and the columns a log reader
# uses (the data readers ignore the last three, which the A/B read-out joins on).
EVENT_LOG_COLUMNS = ("user_id", "item_id", "event", "timestamp", "variant", "model_version", "request_id")
