"""Prometheus metrics of the service, in a registry of its own (one per app, so tests and
several apps in one process never collide in the global registry)."""
from __future__ import annotations

import threading
from typing import Dict, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Fine buckets below 20 ms, where the latency targets are.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Request counts and latency per endpoint and variant; swaps; feedback events."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._served: Dict[str, str] = {}  # variant -> version in rankers_model_info
        self.requests = Counter("rankers_requests", "HTTP requests by endpoint, variant and status code",
                                ["endpoint", "variant", "status"], registry=self.registry)
        self.latency = Histogram("rankers_request_latency_seconds", "Request latency in the service",
                                 ["endpoint", "variant"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.swaps = Counter("rankers_model_swaps", "Model loads (the one at startup included) by variant and result (ok | refused | revived)",
                             ["variant", "result"], registry=self.registry)
        self.model_info = Gauge("rankers_model_info", "1 for the model version each variant serves",
                                ["variant", "version"], registry=self.registry)
        self.events = Counter("rankers_feedback_events", "Feedback events logged by variant and event",
                              ["variant", "event"], registry=self.registry)
        self.impressions = Counter("rankers_impressions", "Responses of /recommend queued for the impression log",
                                   ["variant"], registry=self.registry)
        self.impressions_dropped = Counter("rankers_impressions_dropped",
                                           "Impressions dropped because the log's queue was full",
                                           registry=self.registry)

    def observe(self, endpoint: str, variant: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, variant, str(status)).inc()
        self.latency.labels(endpoint, variant).observe(seconds)

    def on_swap(self, variant: str, result: str, model: Optional[object]) -> None:
        """ModelSlot's callback: count the attempt; a new model replaces the variant's info series."""
        self.swaps.labels(variant, result).inc()
        if model is not None:
            with self._lock:
                old = self._served.get(variant)
                if old is not None and old != model.version:
                    self.model_info.remove(variant, old)
                self._served[variant] = model.version
                self.model_info.labels(variant, model.version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
