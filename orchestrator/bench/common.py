"""Set-up shared by the benches: the request stream every policy replays, the simulated rows, and the
tritonserver the live benches run against."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from pathlib import Path
from typing import Callable

from orchestrator.policy.base import PolicyContext
from orchestrator.policy.registry import make_policy
from orchestrator.profile.schema import Profile
from orchestrator.sim.simulator import SimConfig, Simulator, summarize
from orchestrator.sim.workload import (WARM_PROMPTS, WORLD_STREAMS, PromptSource, Request, Trace, TraceSource, load_prompts, load_trace, request_stream,
                                      scale_to_peak, source_name)
from orchestrator.sim.world import CacheWorld, World, embed_prompts


@dataclasses.dataclass(frozen=True)
class Workload:
    trace: Trace
    requests: list[Request]
    slo_ms: float
    capacity_rps: float
    """The workers' k0 capacity at the SLO, which ``peak_load`` multiplies."""
    make_world: Callable[[], World]
    """A fresh world for one simulated run: an empty simulated cache (plus the warm prompts) that fills
    with what the run serves (``orchestrator.sim.world.CacheWorld``)."""
    warm_prompts: tuple[str, ...] = ()
    """Prompts the cache holds before the stream's first request (the live bench generates them into
    every policy's tenant before its replay; the simulated cache starts with them)."""
    similarity: str = ""
    """What the simulated cache's similarity is computed from (printed with results)."""
    pair: object | None = None
    """The pair predictor argus ranks cached sources with (``PairQualityPredictor``): world streams,
    whose keys are the deployed encoder's embeddings it was trained on; None for real prompts (their
    lexical stand-in key is another space)."""


def build_workload(profile: Profile, trace: str | TraceSource, num_workers: int, peak_load: float, duration_s: float | None,
                   prompts: str | PromptSource,
                   slo_factor: float = 2.0, seed: int = 0, cold_cache: bool = False, warm_prompts: int = WARM_PROMPTS) -> Workload:
    """Trace scaled so its peak is ``peak_load`` x the cluster's k0 capacity, SLO = ``slo_factor`` x
    the k0 batch-of-one latency; seeded, so live and simulated runs replay the same stream.

    The simulated cache (``CacheWorld``) holds what each run served, looked up through the deployed
    text encoder's embeddings. ``warm_prompts`` more prompts of the same source, drawn before the
    stream's (so the stream's edits and repeats may refer to them, as to a persisted cache's), are in
    the cache before the first request: a deployment's cache persists (its own pod with a volume), so
    a replay of a few minutes from an empty one measures a cold start rather than serving.
    ``cold_cache``: no warm prompts (a cold start). Real prompts are keyed by the lexical stand-in
    (``orchestrator.sim.lexical``)."""
    scaled, slo_ms, capacity = _scaled_trace(profile, trace, num_workers, peak_load, duration_s, slo_factor, seed)
    n = len(scaled.arrivals_s)
    warm_n = 0 if cold_cache else warm_prompts
    stream = load_prompts(prompts, warm_n + n, seed=seed)
    warm, stream = tuple(stream[:warm_n]), stream[warm_n:]
    requests = request_stream(scaled, stream, slo_ms, seed=seed)
    world_prompts = source_name(prompts) in WORLD_STREAMS
    similarity = similarity_label(prompts)
    if profile.ground_truth is None:
        raise ValueError(f"profile {profile.source[:60]!r}... carries no ground-truth table: run `argus build-pairs` (it writes one into profiles/)")
    if not world_prompts:  # real prompts: the lexical stand-in key
        from orchestrator.sim.lexical import SimilarityMap, lexical_embeddings, nearest_earlier

        ordered = list(warm) + stream
        dim = profile.quality.embeddings.shape[1]
        embeddings = lexical_embeddings(ordered, dim, seed)
        sim_map = SimilarityMap.fit(nearest_earlier(ordered, embeddings, len(warm)), profile.thresholds)
        make_world = functools.partial(CacheWorld, profile, embeddings, warm, similarity_map=sim_map)
        return Workload(scaled, requests, slo_ms, capacity, make_world, warm, similarity)
    embeddings = embed_prompts(stream + list(warm))
    make_world = functools.partial(CacheWorld, profile, embeddings, warm)
    return Workload(scaled, requests, slo_ms, capacity, make_world, warm, similarity, world_pair_predictor())


def world_pair_predictor():
    """The pair predictor on the shipped ground-truth triples (``argus build-pairs``), or None without them."""
    from orchestrator.paths import CPU_PAIRS
    from orchestrator.sim.world import fit_pair_predictor

    return fit_pair_predictor(CPU_PAIRS) if CPU_PAIRS.exists() else None


def similarity_label(prompts: str | PromptSource) -> str:
    """What the simulated cache's similarity is computed from, for this prompt source (printed with results)."""
    from orchestrator.sim.lexical import LABEL

    return "the deployed (embedded) text encoder" if source_name(prompts) in WORLD_STREAMS else LABEL


def _scaled_trace(profile: Profile, trace: str | TraceSource, num_workers: int, peak_load: float, duration_s: float | None,
                  slo_factor: float, seed: int) -> tuple[Trace, float, float]:
    """(the trace scaled so its peak is ``peak_load`` x the cluster's k0 capacity, the SLO in ms, that capacity)."""
    k0 = profile.variants["k0"]
    slo_ms = slo_factor * k0.latency_ms[1]
    capacity = num_workers * k0.throughput(slo_ms)
    scaled = scale_to_peak(load_trace(trace, seed=seed), peak_load * capacity, duration_s, window_s=max(1.0, 2 * k0.latency_ms[1] / 1000.0))
    return scaled, slo_ms, capacity


def build_label_workload(scenario, trace: str | TraceSource, num_workers: int, peak_load: float, duration_s: float | None,
                         slo_factor: float = 2.0, seed: int = 0) -> Workload:
    """``build_workload`` for the fast/heavy scenario of a quality table (``orchestrator.sim.labels``):
    the same trace scaling and SLO, test prompts drawn with replacement under ``seed``."""
    from orchestrator.sim.labels import label_stream, label_world_factory

    scaled, slo_ms, capacity = _scaled_trace(scenario.profile, trace, num_workers, peak_load, duration_s, slo_factor, seed)
    requests = request_stream(scaled, label_stream(scenario, len(scaled.arrivals_s), seed), slo_ms, seed=seed)
    return Workload(scaled, requests, slo_ms, capacity, label_world_factory(scenario))


def simulate(profile: Profile, requests: list[Request], num_workers: int, policies: tuple[str, ...], duration_s: float,
             slo_ms: float, make_world: Callable[[], World] | None = None, colocated: tuple[str, ...] = (),
             decision_profile: Profile | None = None, text_predictor=None, pair=None, **sim_kw) -> dict[str, dict]:
    """Each policy on the same requests in the simulator: its table row plus its wall time. Workers
    run at ``profile``'s latencies; policies decide (and replan) from ``decision_profile`` (default
    the same), as a live front door decides from its profile while the machine runs at its own speed.
    ``text_predictor``: the policies' context predicts the variants it covers from each prompt's text.
    ``pair``: the pair predictor that policies ranking cached sources (argus) read (``Workload.pair``).
    ``sim_kw``: more ``SimConfig`` fields (the speed scatter, the router's weights)."""
    ctx = PolicyContext.build(decision_profile or profile, slo_ms)
    ctx.pair = pair
    ctx.text = text_predictor  # a deployment's quality table: argus predicts the fast model from the prompt's text
    rows = {}
    for name in policies:
        t = time.perf_counter()
        sim = Simulator(profile, make_policy(name, ctx), SimConfig(num_workers, max_batch=max(profile.variants["k0"].latency_ms),
                                                                      colocated_families=colocated, **sim_kw),
                        world=make_world() if make_world else None)
        rows[name] = {**summarize(sim.run(requests), duration_s), "sim_wall_s": time.perf_counter() - t}
    return rows


@contextlib.contextmanager
def triton_worker(worker: str | None, grpc_port: int, log_name: str):
    """The gRPC url of ``worker`` (a running tritonserver with the whole repository), or of a full
    server started on ``grpc_port`` for the block (its log under runs/) and stopped after it."""
    from orchestrator.paths import RUNS_DIR

    server = None
    if worker is None:
        server = start_full_server(grpc_port, RUNS_DIR / log_name)
        worker = server.config.grpc_url
    try:
        yield worker
    finally:
        if server is not None:
            server.stop()


def start_full_server(grpc_port: int, log_path: Path | None = None):
    """A started tritonserver on the default repository (written first) with every model loaded;
    HTTP on grpc_port - 1, metrics on grpc_port + 1."""
    from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, write_repository
    from orchestrator.triton.server import TritonConfig, TritonServer

    repo = RepositoryConfig()
    write_repository(repo, PROJECT_REPOSITORY)
    return TritonServer(TritonConfig(grpc_port=grpc_port, http_port=grpc_port - 1, metrics_port=grpc_port + 1,
                                     load_models=tuple(models_to_load(repo)), log_path=log_path)).start()

