"""Prometheus metrics, held in a registry of the app's own (no process-global collector state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds; from a cached health check to a slow upload.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "citeqa_http_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "citeqa_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_latency = Histogram(
            "citeqa_stage_duration_seconds",
            "Stage latency: queue (waiting for a worker), retrieve, read, total, cache (an answer-cache hit),"
            " index_update",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "citeqa_answers",
            "Questions answered, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "citeqa_http_requests_in_flight", "Requests being served", registry=self.registry
        )
        self.ready = Gauge(
            "citeqa_ready", "1 once the index and the models are loaded", registry=self.registry
        )
        self.index_documents = Gauge(
            "citeqa_index_documents", "Documents in the index version loaded", registry=self.registry
        )
        self.index_chunks = Gauge(
            "citeqa_index_chunks", "Chunks in the index version loaded", registry=self.registry
        )

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            if "cache" in timings_ms and stage in ("retrieve", "read"):
                continue  # an answer from the cache ran neither: its zeros would pull their histograms to 0
            self.stage_latency.labels(stage=stage).observe(ms / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
