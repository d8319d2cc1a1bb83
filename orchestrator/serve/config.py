"""The front door's configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class FrontDoorConfig:
    workers: list[str]
    """Triton gRPC endpoints (host:port), one per worker."""
    profile_path: Path
    cache: str | None = None
    """The cache endpoint (host:port): a tritonserver serving t2i_probe and cache_retrieval, which
    every request's probe goes to. None: the first worker, as on one machine. When it does not
    answer, requests are served as k0 (``argus_cache_unavailable_total``)."""
    policy: str = "argus"
    address: str = "127.0.0.1"
    port: int = 18500
    metrics_port: int | None = 18502
    http_port: int | None = 18501
    """KServe v2 HTTP/REST and the OpenAI Images API (``/v1/images/generations``); None: gRPC only."""
    colocated_families: tuple[str, ...] = ()
    """Model families every worker holds at once (``WorkerState.colocated``): ("base", "fast") when each
    tritonserver loads the whole repository, as on one CPU machine; the router may then send a
    request to the fast model on a base worker without a switch. Empty: one family per worker."""
    one_batch_at_a_time: bool = True
    """Dispatch one variant's batch at a time per worker, first come first served
    (``serve.dispatch.DispatchGate``), as the router and the simulator assume; False lets Triton
    run different variants at once on a worker's cores (the simulator's ``mixed_variants``)."""
    max_images_per_request: int = 4
    """Largest ``n`` of an OpenAI image request (each image is one admitted request)."""
    default_slo_ms: float = 5000.0
    max_queue: int = 64
    """Admitted requests in flight, at most; beyond it RESOURCE_EXHAUSTED at once."""
    plan_interval_s: float | None = None
    """How often the control loop replans; None: the profile's default (2x the k0 batch-of-one
    latency), the same the simulator uses."""
    auth_token: str | None = None
    """Bearer token required in the 'authorization' metadata."""
    allow_unauthenticated: bool = False
    """Serve without a token. Must be set explicitly: a config with neither is refused."""
    tenants: frozenset[str] | None = None
    """Known tenant ids; when set, any other TENANT gets INVALID_ARGUMENT. None: any printable id
    names its own cache partition."""
    request_timeout_s: float = 120.0
    """Client timeout of one generation on a worker; a variant that exceeds it is taken out of that
    worker's routing for ``variant_cooldown_s`` (a stuck model must not take more requests)."""
    variant_cooldown_s: float = 30.0
    health_interval_s: float = 1.0
    """How often workers are health-checked (and dead owned servers restarted)."""
    drain_timeout_s: float = 30.0
    """On shutdown, how long in-flight requests may take to finish."""
    score_quality: bool = True
    """Score returned images with the quality scorer (the tiny CLIP) for the measured-quality
    metric beside the predicted one: in a background thread, never on the response path."""
    scorer_dir: Path | None = None
    """The quality scorer: None, the embedded tiny CLIP; else a local transformers CLIPModel directory."""
    pair_table: Path | None = None
    """Ground-truth (prompt, cached source, K) triples (``argus build-pairs``) to fit the pair
    predictor on at start: each request's K variants then resume from the cached source it
    predicts best among the cache's candidates, not only the most similar. None: off (on the
    shipped weights it predicts held-out templates worse than each variant's mean, README)."""
    score_sample_rate: float = 1.0
    """Fraction of returned images scored (0..1); images arriving while the scorer is behind are skipped."""
    max_instances: int = 2
    """Denoiser instances for the variants carrying most of a worker's planned traffic (set through
    Triton's model-control API); 0 leaves instance counts alone."""

    @classmethod
    def for_measurement(cls, worker: str, profile_path: Path, policy: str, port: int, **kw) -> FrontDoorConfig:
        """A front door that measures (the benches, ``argus profile``): one worker, gRPC only, no auth,
        no metrics port, no quality scoring, instance counts left alone (the run measures the policy
        and the path, not the plan's reloads)."""
        return cls(workers=[worker], profile_path=profile_path, policy=policy, port=port, metrics_port=None, http_port=None,
                   allow_unauthenticated=True, score_quality=False, max_instances=0, **kw)

    def __post_init__(self):
        if not 0.0 <= self.score_sample_rate <= 1.0:
            raise ValueError(f"score_sample_rate must be in [0, 1], got {self.score_sample_rate}")
