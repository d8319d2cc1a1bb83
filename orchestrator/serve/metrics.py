"""The front door's Prometheus metrics (served on metrics_port, loopback by default)."""

from __future__ import annotations


class Metrics:
    """The orchestrator's Prometheus metrics (served on metrics_port, loopback by default)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("argus_requests_total", "Requests by outcome", ["outcome"], registry=r)
        self.variant = Counter("argus_variant_total", "Served requests by chosen variant", ["variant"], registry=r)
        self.slo_violations = Counter("argus_slo_violations_total", "Served requests that missed their SLO", registry=r)
        self.floor_at_k0 = Counter("argus_quality_floor_k0_total",
                                   "Requests whose min_quality only k0 met: served at k0 even if late, or refused when no worker serves k0", registry=r)
        self.in_flight = Gauge("argus_in_flight", "Admitted requests not yet answered", registry=r)
        self.backlog = Gauge("argus_worker_backlog_seconds", "Estimated queued work per worker", ["worker"], registry=r)
        self.slowdown = Gauge("argus_worker_slowdown", "Observed / profile-predicted time to completion per worker (EWMA)", ["worker"],
                              registry=r)
        self.latency = Histogram("argus_latency_seconds", "End-to-end latency", buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32), registry=r)
        self.predicted_quality = Histogram("argus_predicted_quality", "Predicted relative quality of served requests",
                                           buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.1), registry=r)
        self.measured_clip = Histogram("argus_measured_clip_score", "CLIP score of returned images by variant", ["variant"],
                                       buckets=(10, 20, 30, 40, 50, 60, 70, 80, 90), registry=r)
        self.demand = Gauge("argus_forecast_rps", "Forecast arrival rate", registry=r)
        self.planned_quality = Gauge("argus_planned_quality", "Expected relative quality of the current plan", registry=r)
        self.instances = Gauge("argus_denoiser_instances", "Denoiser instances set on each worker", ["worker", "model"], registry=r)
        self.worker_healthy = Gauge("argus_worker_healthy", "1 while a worker is ready and in routing", ["worker"], registry=r)
        self.worker_restarts = Counter("argus_worker_restarts_total", "Owned tritonservers restarted after dying", ["worker"], registry=r)
        self.variant_disabled = Gauge("argus_variant_disabled", "1 while a variant is out of a worker's routing after a timeout",
                                      ["worker", "variant"], registry=r)
        self.timeouts = Counter("argus_variant_timeouts_total", "Generations that exceeded request_timeout_s", ["worker", "variant"], registry=r)
        self.cache_unavailable = Counter("argus_cache_unavailable_total",
                                         "Requests decided without the cache: it did not answer the probe in its budget (served as k0)", registry=r)
        self.cache_fallback = Counter("argus_cache_fallback_k0_total",
                                      "Requests routed to K>0 that ran as k0: the entry was evicted or the cache went down meanwhile", registry=r)
        self.instance_changes = Counter("argus_instance_changes_total", "Instance-count overrides applied through Triton model control",
                                        ["model", "count"], registry=r)

    def value(self, name: str, labels: dict | None = None) -> float:
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v
