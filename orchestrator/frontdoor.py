"""The front door: a KServe v2 / Triton gRPC endpoint (model ``t2i``) in front of the cluster.

``tritonclient`` and ``perf_analyzer`` call it exactly as they call Triton. Each request goes
through small named phases with typed hand-offs:

    admit      validate inputs, bound the queue         -> Admitted   (or INVALID_ARGUMENT / RESOURCE_EXHAUSTED)
    featurize  embed the prompt, look the cache up      -> RequestFeatures
    decide     policy.route(features, state, now)       -> Decision   (pure; the simulator calls the same)
    execute    run t2i_<variant> on the chosen worker   -> images
    record     cache insert, metrics, state bookkeeping

A planner thread replans every ``plan_interval_s`` from the forecast arrival rate. Only the
inference, health and metadata RPCs exist here: Triton's model-control, repository and
shared-memory endpoints are never reachable through the front door (UNIMPLEMENTED).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor

from orchestrator.cache import client as cache_client
from orchestrator.forecast import HoltForecaster
from orchestrator.policies import Policy, PolicyContext, PromptClasses, make_policy
from orchestrator.predictor import QualityPredictor
from orchestrator.profile import Profile
from orchestrator.router import ClusterState, Decision, RequestFeatures, WorkerState, assign_families
from orchestrator.triton.client import generate_with_levels
from orchestrator.validation import MAX_PROMPT_BYTES, MAX_TENANT_BYTES, InvalidText, decode_text

log = logging.getLogger("argus.frontdoor")
MODEL_NAME = "t2i"
MAX_SLO_MS = 600_000


@dataclasses.dataclass
class FrontDoorConfig:
    workers: list[str]
    """Triton gRPC endpoints (host:port), one per worker; the first also hosts the shared cache."""
    profile_path: Path
    policy: str = "argus"
    address: str = "127.0.0.1"
    port: int = 18500
    metrics_port: int | None = 18502
    default_slo_ms: float = 5000.0
    max_queue: int = 64
    """Admitted requests in flight, at most; beyond it RESOURCE_EXHAUSTED at once."""
    plan_interval_s: float = 2.0
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
    """Score every returned image with the quality scorer (the tiny CLIP; ~ms on CPU) for the
    measured-quality metric beside the predicted one."""
    max_instances: int = 2
    """Denoiser instances for the variants carrying most of a worker's planned traffic (set through
    Triton's model-control API); 0 leaves instance counts alone."""


class BadInput(ValueError):
    pass


class Draining(RuntimeError):
    """The front door is shutting down: no new admissions."""


class VariantTimeout(RuntimeError):
    """A generation exceeded request_timeout_s on its worker."""


WORKER_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # A restarted worker must be reachable at once: short reconnect backoff, and a channel of its
    # own (channels otherwise share subchannels, and with them a long backoff, process-wide).
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def worker_client(url: str) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(url, channel_args=WORKER_CHANNEL_ARGS)


def prompt_for_log(prompt: str) -> str:
    """Prompts are user data: full text only with debug logging, else length and a digest."""
    if log.isEnabledFor(logging.DEBUG):
        return repr(prompt)
    import hashlib

    return f"<prompt {len(prompt)} chars sha1:{hashlib.sha1(prompt.encode('utf-8', 'replace')).hexdigest()[:10]}>"


@dataclasses.dataclass
class Admitted:
    request_id: str
    prompt: str
    seed: int
    slo_ms: float
    tenant: str | None
    arrival_s: float


def _input_arrays(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    dtypes = {"BYTES": np.object_, "INT64": np.int64, "INT32": np.int32, "FP32": np.float32, "FP64": np.float64}
    out = {}
    for i, inp in enumerate(request.inputs):
        if inp.datatype not in dtypes:
            raise BadInput(f"input {inp.name} has unsupported datatype {inp.datatype}")
        shape = [int(d) for d in inp.shape]
        if any(d < 0 for d in shape) or len(shape) > 4 or int(np.prod(shape, dtype=np.float64)) > 16:
            raise BadInput(f"input {inp.name[:40]} has shape {shape[:8]}; expected one element ([1] or [1, 1])")
        if i < len(request.raw_input_contents):
            raw = request.raw_input_contents[i]
            arr = deserialize_bytes_tensor(raw) if inp.datatype == "BYTES" else np.frombuffer(raw, dtype=dtypes[inp.datatype])
        elif inp.datatype == "BYTES":
            arr = np.array(list(inp.contents.bytes_contents), dtype=np.object_)
        else:
            field = {"INT64": "int64_contents", "INT32": "int_contents", "FP32": "fp32_contents", "FP64": "fp64_contents"}[inp.datatype]
            arr = np.array(getattr(inp.contents, field), dtype=dtypes[inp.datatype])
        if arr.size != int(np.prod(shape)):
            raise BadInput(f"input {inp.name} has {arr.size} elements for shape {shape}")
        out[inp.name] = arr.reshape(shape)
    return out


def parse_request(request: service_pb2.ModelInferRequest, default_slo_ms: float, tenants: frozenset[str] | None = None) -> Admitted:
    """Validate one t2i request: one prompt (BYTES [1] or [1,1]), optional SEED, SLO_MS, TENANT."""
    try:
        return _parse_request(request, default_slo_ms, tenants)
    except BadInput:
        raise
    except Exception as e:  # noqa: BLE001 - any malformed tensor is the client's error, never the server's
        raise BadInput(f"malformed request: {type(e).__name__}: {str(e)[:200]}") from None


def _parse_request(request: service_pb2.ModelInferRequest, default_slo_ms: float, tenants: frozenset[str] | None) -> Admitted:
    if request.model_name != MODEL_NAME:
        raise BadInput(f"unknown model '{request.model_name[:100]}'; this endpoint serves '{MODEL_NAME}'")
    if len(request.inputs) > 8:
        raise BadInput(f"{len(request.inputs)} inputs; expected at most PROMPT, SEED, SLO_MS, TENANT")
    arrays = _input_arrays(request)
    unknown = set(arrays) - {"PROMPT", "SEED", "SLO_MS", "TENANT"}
    if unknown:
        raise BadInput(f"unknown inputs {sorted(unknown)}; expected PROMPT, SEED, SLO_MS, TENANT")
    if "PROMPT" not in arrays:
        raise BadInput("missing input PROMPT")
    prompts = arrays["PROMPT"].reshape(-1)
    if len(prompts) != 1:
        raise BadInput(f"one prompt per request, got {len(prompts)} (batching happens inside the cluster)")
    try:
        prompt = decode_text(prompts[0], "prompt", MAX_PROMPT_BYTES)
    except InvalidText as e:
        raise BadInput(str(e)) from None

    def scalar(name, kinds, default):
        if name not in arrays:
            return default
        a = arrays[name].reshape(-1)
        if a.size != 1 or a.dtype.kind not in kinds:
            raise BadInput(f"{name} must be one {'integer' if kinds == 'iu' else 'number'}")
        return a[0].item()

    seed = int(scalar("SEED", "iu", 0))
    if not 0 <= seed < 2**63:
        raise BadInput(f"SEED must be in [0, 2^63), got {seed}")
    slo = float(scalar("SLO_MS", "iuf", default_slo_ms))
    if not np.isfinite(slo) or not 0 < slo <= MAX_SLO_MS:
        raise BadInput(f"SLO_MS must be in (0, {MAX_SLO_MS}], got {slo}")
    tenant = None
    if "TENANT" in arrays:
        try:
            tenant = decode_text(arrays["TENANT"].reshape(-1)[0], "TENANT", MAX_TENANT_BYTES, printable=True)
        except InvalidText as e:
            raise BadInput(str(e)) from None
        if tenants is not None and tenant not in tenants:
            raise BadInput("unknown tenant")
    if len(request.id) > 128:
        raise BadInput("request id longer than 128 characters")
    rid = request.id or uuid.uuid4().hex[:16]
    return Admitted(rid, prompt, seed, slo, tenant, time.monotonic())


class Metrics:
    """The orchestrator's Prometheus metrics (served on metrics_port, loopback by default)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("argus_requests_total", "Requests by outcome", ["outcome"], registry=r)
        self.variant = Counter("argus_variant_total", "Served requests by chosen variant", ["variant"], registry=r)
        self.slo_violations = Counter("argus_slo_violations_total", "Served requests that missed their SLO", registry=r)
        self.in_flight = Gauge("argus_in_flight", "Admitted requests not yet answered", registry=r)
        self.backlog = Gauge("argus_worker_backlog_seconds", "Estimated queued work per worker", ["worker"], registry=r)
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
        self.instance_changes = Counter("argus_instance_changes_total", "Instance-count overrides applied through Triton model control",
                                        ["model", "count"], registry=r)

    def value(self, name: str, labels: dict | None = None) -> float:
        v = self.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v


class Engine:
    """The core loop: admit -> featurize -> decide -> execute -> record."""

    def __init__(self, cfg: FrontDoorConfig, policy: Policy | None = None, servers: dict | None = None):
        """``servers``: worker url -> TritonServer this process owns (restarted when it dies)."""
        if cfg.auth_token is None and not cfg.allow_unauthenticated:
            raise ValueError("no bearer token: set auth_token, or allow_unauthenticated=True to serve without auth deliberately")
        self.cfg = cfg
        self.servers = dict(servers or {})
        self.profile = Profile.load(cfg.profile_path)
        predictor = QualityPredictor.fit(self.profile.quality)
        classes = PromptClasses.fit(self.profile.quality.embeddings, k=8)
        self.policy = policy or make_policy(cfg.policy, PolicyContext(self.profile, predictor, classes, cfg.default_slo_ms))
        self.predictor, self.classes = predictor, classes
        self.clients = {w: worker_client(w) for w in cfg.workers}
        self.cache_worker = cfg.workers[0]
        self.state = ClusterState([WorkerState(w, f) for w, f in zip(cfg.workers, self.policy.initial_families(len(cfg.workers)))],
                                  np.zeros((len(classes), len(self.policy.variants))))
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.draining = False
        self.idle = threading.Condition(self.lock)
        self.disabled_until: dict[tuple[str, str], float] = {}
        self.restarts: dict[str, int] = {}
        self.metrics = Metrics()
        self.forecaster = HoltForecaster()
        self.arrivals = 0
        self.stop = threading.Event()
        self.scorer = None
        if cfg.score_quality:
            from tiny_model.quality import QualityScorer

            self.scorer = QualityScorer()
            self.scorer_lock = threading.Lock()
        for w in cfg.workers:
            self.metrics.worker_healthy.labels(worker=w).set(1)
        self._planner = threading.Thread(target=self._plan_loop, daemon=True)
        self._planner.start()
        self._health = threading.Thread(target=self._health_loop, daemon=True)
        self._health.start()

    # ---------------------------------------------------------------- phases
    def admit(self, request) -> Admitted:
        adm = parse_request(request, self.cfg.default_slo_ms, self.cfg.tenants)
        with self.lock:
            if self.draining:
                raise Draining("shutting down; not admitting new requests")
            self.arrivals += 1
            if self.in_flight >= self.cfg.max_queue:
                raise OverflowError(f"admission queue full ({self.cfg.max_queue} in flight); retry after ~1 s")
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        log.debug("admitted %s %s", adm.request_id, prompt_for_log(adm.prompt))
        self.metrics.in_flight.inc()
        return adm

    def featurize(self, adm: Admitted) -> tuple[RequestFeatures, np.ndarray, dict[str, float]]:
        client = self.clients[self.cache_worker]
        t = self.cfg.request_timeout_s
        emb = cache_client.encode(client, [adm.prompt], timeout_s=t)[0]
        tenants = None if adm.tenant is None else [adm.tenant]
        sims: dict[str, float] = {}
        if any(self.profile.variants[v].needs_cache for v in self.policy.variants):
            got = cache_client.lookup(client, emb[None], tenants=tenants, timeout_s=t)
            sims = {f"k{k}": float(s) for k, s in zip(sorted(self.profile.thresholds), got.similarity[0])}
        pred = self.predictor.predict(emb, sims)
        with self.lock:  # a dead worker or a timed-out variant is not on offer
            available = self.profile.available_variants(sims) & self.state.servable(self.policy.variants)
        feats = RequestFeatures(adm.request_id, adm.arrival_s, adm.arrival_s + adm.slo_ms / 1000.0, self.classes.assign(emb), pred, available)
        return feats, emb, sims

    def decide(self, feats: RequestFeatures) -> Decision:
        with self.lock:
            self.state.observe(feats, self.policy.variants)
            decision = self.policy.route(feats, self.state, time.monotonic())
            self.state.apply(feats, decision, self.policy.variants)
        return decision

    def execute(self, adm: Admitted, decision: Decision, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, Decision]:
        """Run the chosen variant; returns (images, level latents, the decision actually executed)."""
        client = self.clients[decision.worker]
        k = self.profile.variants[decision.variant].k
        latents = None
        if k > 0:
            tenants = None if adm.tenant is None else [adm.tenant]
            got = cache_client.lookup(self.clients[self.cache_worker], emb[None], k=k, tenants=tenants, timeout_s=self.cfg.request_timeout_s)
            if got.k[0] != k:  # evicted since featurize: fall back to full quality
                decision = dataclasses.replace(decision, variant="k0", reason=decision.reason + "; cache entry evicted, k0")
            else:
                latents = got.latent
        variant = decision.variant
        try:
            images, levels = generate_with_levels(client, [adm.prompt], [adm.seed], variant, latents, timeout_s=self.cfg.request_timeout_s,
                                                  levels=variant != "fast")
        except Exception as e:  # noqa: BLE001 - classified: a timeout disables the variant here
            if "DEADLINE_EXCEEDED" in str(getattr(e, "status", lambda: "")()) or "Deadline Exceeded" in str(e):
                self.disable_variant(decision.worker, variant)
                raise VariantTimeout(f"{variant} on {decision.worker} exceeded {self.cfg.request_timeout_s:.1f}s; taken out of routing") from None
            raise
        return images, levels, decision

    def disable_variant(self, worker: str, variant: str) -> None:
        with self.lock:
            self.state.worker(worker).disabled.add(variant)
            self.disabled_until[(worker, variant)] = time.monotonic() + self.cfg.variant_cooldown_s
        self.metrics.timeouts.labels(worker=worker, variant=variant).inc()
        self.metrics.variant_disabled.labels(worker=worker, variant=variant).set(1)
        log.warning("worker %s: %s timed out (> %.1fs); out of routing for %.0fs", worker, variant, self.cfg.request_timeout_s,
                    self.cfg.variant_cooldown_s)

    def record(self, adm: Admitted, decision: Decision, emb: np.ndarray, levels: np.ndarray | None, ok: bool,
               images: np.ndarray | None = None) -> None:
        with self.lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.idle.notify_all()
            if decision.worker is not None:
                self.metrics.backlog.labels(worker=decision.worker).set(self.state.release(decision))
        self.metrics.in_flight.dec()
        if not ok:
            return
        if levels is not None and np.isfinite(levels).any():
            try:
                cache_client.insert(self.clients[self.cache_worker], emb[None], levels, None if adm.tenant is None else [adm.tenant],
                                    timeout_s=self.cfg.request_timeout_s)
            except Exception as e:  # noqa: BLE001 - a failed insert costs future hits, not this answer
                log.warning("cache insert failed: %s", e)
        latency = time.monotonic() - adm.arrival_s
        self.metrics.latency.observe(latency)
        self.metrics.variant.labels(variant=decision.variant).inc()
        self.metrics.predicted_quality.observe(decision.predicted_quality)
        if latency * 1000 > adm.slo_ms:
            self.metrics.slo_violations.inc()
        if self.scorer is not None and images is not None:
            with self.scorer_lock:  # a few ms before the answer goes out; the latency metric above excludes it
                score = float(self.scorer.clip_score(images, [adm.prompt])[0])
            self.metrics.measured_clip.labels(variant=decision.variant).observe(score)

    # ---------------------------------------------------------------- planning
    def _plan_loop(self):
        last = time.monotonic()
        while not self.stop.wait(self.cfg.plan_interval_s):
            now = time.monotonic()
            with self.lock:
                rate = self.arrivals / max(now - last, 1e-6)
                self.arrivals = 0
            last = now
            self.forecaster.observe(rate)
            demand = self.forecaster.forecast(1)
            self.metrics.demand.set(demand)
            mix = np.full(len(self.classes), 1.0 / len(self.classes))
            with self.lock:
                served = self.state.served.sum(1)
                if served.sum() > 0:
                    mix = 0.5 * mix + 0.5 * served / served.sum()
                previous = {}
                for w in self.state.workers:
                    previous[w.family] = previous.get(w.family, 0) + 1
                observed = self.state.observed_availability()
            try:
                plan = self.policy.replan(demand, mix, len(self.cfg.workers), previous, observed)
            except Exception as e:  # noqa: BLE001 - a failed solve keeps the previous plan serving
                log.error("replan failed (previous plan kept): %s", e)
                continue
            if plan is None:
                continue
            self.metrics.planned_quality.set(plan.expected_quality)
            self._apply(plan)
            if self.cfg.max_instances:
                self._apply_instances(plan, mix)

    def _apply(self, plan) -> None:
        """Assign model families to workers (every worker has every model loaded here, so this
        re-labels routing targets; on GPU it is where a fast-model load would be issued)."""
        with self.lock:
            new = assign_families([w.family for w in self.state.workers], plan.workers)
            if new != [w.family for w in self.state.workers]:
                log.info("plan applied: %s", new)
            for w, fam in zip(self.state.workers, new):
                w.family = fam

    def _apply_instances(self, plan, mix: np.ndarray) -> None:
        """Instance counts per worker through Triton's model control (full-config override)."""
        from orchestrator.triton.control import desired_instances, set_instance_count

        if plan.fractions.shape[0] != len(mix):  # a prompt-agnostic plan has one class
            mix = np.ones(plan.fractions.shape[0]) / plan.fractions.shape[0]
        with self.lock:
            families = {w.name: w.family for w in self.state.workers}
        for worker, family in families.items():
            client = self.clients[worker]
            for model, count in desired_instances(family, plan.variants, plan.fractions, mix, self.cfg.max_instances).items():
                try:
                    if client.is_model_ready(model) and set_instance_count(client, model, count):
                        log.info("worker %s: %s -> %d instances", worker, model, count)
                        self.metrics.instance_changes.labels(model=model, count=str(count)).inc()
                    self.metrics.instances.labels(worker=worker, model=model).set(count)
                except Exception as e:  # noqa: BLE001 - a failed override keeps the old instances serving
                    log.warning("worker %s: cannot set %s to %d instances: %s", worker, model, count, e)

    # ---------------------------------------------------------------- health
    def _health_loop(self):
        """Workers that stop answering leave routing; owned servers that died are restarted with
        exponential backoff; variants whose cooldown ended come back."""
        backoff = {w: 1.0 for w in self.cfg.workers}
        next_try = {w: 0.0 for w in self.cfg.workers}
        restarting: set[str] = set()
        while not self.stop.wait(self.cfg.health_interval_s):
            now = time.monotonic()
            with self.lock:
                for (worker, variant), until in list(self.disabled_until.items()):
                    if now >= until:
                        del self.disabled_until[(worker, variant)]
                        self.state.worker(worker).disabled.discard(variant)
                        self.metrics.variant_disabled.labels(worker=worker, variant=variant).set(0)
                        log.info("worker %s: %s back in routing after its cooldown", worker, variant)
            for w in self.cfg.workers:
                if w in restarting:
                    continue
                server = self.servers.get(w)
                dead = server is not None and server.proc is not None and server.proc.poll() is not None
                ready = not dead and self._ready(w)
                self._set_healthy(w, ready)
                if dead and now >= next_try[w]:
                    restarting.add(w)
                    next_try[w] = now + backoff[w]
                    backoff[w] = min(2 * backoff[w], 30.0)
                    threading.Thread(target=self._restart, args=(w, server, restarting, backoff), daemon=True).start()

    def _ready(self, worker: str) -> bool:
        """Probe a worker. An unhealthy one is probed on a fresh channel (an old channel may sit in
        gRPC's reconnect backoff long after the server is back), which then replaces the old one."""
        with self.lock:
            healthy = self.state.worker(worker).healthy
        client = self.clients[worker] if healthy else worker_client(worker)
        try:
            ready = bool(client.is_server_ready(client_timeout=2.0))
        except Exception:  # noqa: BLE001 - any failure to answer is "not ready"
            ready = False
        if ready and not healthy:
            self.clients[worker] = client
        return ready

    def _set_healthy(self, worker: str, healthy: bool) -> None:
        with self.lock:
            ws = self.state.worker(worker)
            changed = ws.healthy != healthy
            ws.healthy = healthy
        if changed:
            (log.info if healthy else log.warning)("worker %s %s routing", worker, "back in" if healthy else "out of")
        self.metrics.worker_healthy.labels(worker=worker).set(1 if healthy else 0)

    def _restart(self, worker: str, server, restarting: set, backoff: dict) -> None:
        log.warning("worker %s: tritonserver died (exit %s); restarting", worker, server.proc.returncode)
        try:
            server.stop()
            server.start(wait=True)  # loads the configured models; the plan loop re-applies instance counts
            self.restarts[worker] = self.restarts.get(worker, 0) + 1
            self.metrics.worker_restarts.labels(worker=worker).inc()
            backoff[worker] = 1.0
            log.info("worker %s: restarted and ready", worker)
        except Exception as e:  # noqa: BLE001 - retried by the health loop after the backoff
            log.error("worker %s: restart failed: %s", worker, e)
        finally:
            restarting.discard(worker)

    # ---------------------------------------------------------------- shutdown
    def drain(self, timeout_s: float | None = None) -> bool:
        """Stop admitting; wait for in-flight requests (up to the deadline). True if all finished."""
        deadline = time.monotonic() + (self.cfg.drain_timeout_s if timeout_s is None else timeout_s)
        with self.lock:
            self.draining = True
            while self.in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("drain deadline passed with %d requests in flight", self.in_flight)
                    return False
                self.idle.wait(left)
        return True

    def close(self):
        self.stop.set()


class T2IServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    def _auth(self, context) -> None:
        token = self.engine.cfg.auth_token
        if token is None:
            return
        md = dict(context.invocation_metadata())
        if md.get("authorization") != f"Bearer {token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=not self.engine.stop.is_set() and not self.engine.draining)

    def ModelReady(self, request, context):
        return service_pb2.ModelReadyResponse(ready=request.name == MODEL_NAME)

    def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(name="argus-frontdoor", version="0.1.0", extensions=[])

    def ModelMetadata(self, request, context):
        self._auth(context)
        if request.name != MODEL_NAME:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        t = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=MODEL_NAME, versions=["1"], platform="argus",
            inputs=[t(name="PROMPT", datatype="BYTES", shape=[1]), t(name="SEED", datatype="INT64", shape=[1]),
                    t(name="SLO_MS", datatype="FP32", shape=[1]), t(name="TENANT", datatype="BYTES", shape=[1])],
            outputs=[t(name="IMAGE", datatype="UINT8", shape=[-1, -1, 3])],
        )

    def ModelConfig(self, request, context):
        from tritonclient.grpc import model_config_pb2 as mc

        self._auth(context)
        if request.name != MODEL_NAME:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        cfg = mc.ModelConfig(name=MODEL_NAME, platform="argus", max_batch_size=0)
        for name, dt in (("PROMPT", mc.TYPE_STRING), ("SEED", mc.TYPE_INT64), ("SLO_MS", mc.TYPE_FP32), ("TENANT", mc.TYPE_STRING)):
            cfg.input.add(name=name, data_type=dt, dims=[1], optional=name != "PROMPT")
        cfg.output.add(name="IMAGE", data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
        return service_pb2.ModelConfigResponse(config=cfg)

    def ModelInfer(self, request, context):
        self._auth(context)
        eng = self.engine
        try:
            adm = eng.admit(request)
        except BadInput as e:
            eng.metrics.requests.labels(outcome="invalid").inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except OverflowError as e:
            eng.metrics.requests.labels(outcome="rejected").inc()
            context.set_trailing_metadata((("retry-after-ms", "1000"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except Draining as e:
            eng.metrics.requests.labels(outcome="draining").inc()
            context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        decision, emb, levels, failure, images = Decision(None, None, "not decided"), None, None, None, None
        try:
            feats, emb, _ = eng.featurize(adm)
            decision = eng.decide(feats)
            if decision.variant is not None:
                images, levels, decision = eng.execute(adm, decision, emb)
        except Exception as e:  # noqa: BLE001 - a worker failure is this request's error, not the server's
            failure = e
        finally:
            eng.record(adm, decision, emb, levels, ok=failure is None and decision.variant is not None, images=images)
        if isinstance(failure, VariantTimeout):
            eng.metrics.requests.labels(outcome="timeout").inc()
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, str(failure))
        if failure is not None:
            eng.metrics.requests.labels(outcome="error").inc()
            log.warning("request %s failed on %s: %s", adm.request_id, decision.worker, str(failure)[:300])
            context.abort(grpc.StatusCode.UNAVAILABLE, f"worker failed: {type(failure).__name__}: {str(failure)[:300]}")
        if decision.variant is None:
            eng.metrics.requests.labels(outcome="shed").inc()
            context.set_trailing_metadata((("retry-after-ms", "1000"),))
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"shed: {decision.reason}")
        eng.metrics.requests.labels(outcome="ok").inc()
        resp = service_pb2.ModelInferResponse(model_name=MODEL_NAME, model_version="1", id=adm.request_id)
        out = resp.outputs.add(name="IMAGE", datatype="UINT8", shape=list(images.shape[1:]))
        del out
        resp.raw_output_contents.append(np.ascontiguousarray(images[0]).tobytes())
        params = {"variant": decision.variant, "k": str(eng.profile.variants[decision.variant].k), "worker": decision.worker,
                  "predicted_quality": f"{decision.predicted_quality:.4f}", "reason": decision.reason}
        for key, value in params.items():
            resp.parameters[key].string_param = value
        return resp


def serve(cfg: FrontDoorConfig, engine: Engine | None = None, servers: dict | None = None) -> tuple[grpc.Server, Engine]:
    """Start the gRPC front door (and its metrics endpoint); returns (server, engine).
    ``servers``: worker url -> TritonServer owned here (restarted by the engine when it dies)."""
    engine = engine or Engine(cfg, servers=servers)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max(16, cfg.max_queue + 8)),
                         options=[("grpc.max_receive_message_length", 8 * 2**20)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(T2IServicer(engine), server)
    bound = server.add_insecure_port(f"{cfg.address}:{cfg.port}")
    if bound == 0:
        raise OSError(f"cannot bind {cfg.address}:{cfg.port}")
    server.start()
    if cfg.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(cfg.metrics_port, addr=cfg.address, registry=engine.metrics.registry)
    return server, engine
