"""``argus bench live``: replay one trace through the real stack (Triton + cache + front door) once
per policy, then the same request stream through the simulator with the CPU profile, side by side.

Phases, each a small function with a typed hand-off:

    workload   trace -> scaled to peak x the k0 capacity -> Request stream (the simulator's too)
    warm       the prompts the cache holds before the stream, generated once at k0
    bracket    per policy: the worker's speed now against the profile's, before and after its replay
    replay     per policy: its tenant filled with the warm entries, a fresh front door, open-loop
               sends at the arrival times -> LiveRecord (with each answer's generation time and batch)
    reference  the k0 image of every (prompt, seed), generated alone after the replays
    score      CLIP score of every returned image / its k0 reference's -> relative quality
    simulate   per policy: the same stream, deciding from the profile its front door served from,
               run at the speed its replay's own generation calls measured
    report     records.jsonl, summary.json, table, plots, live-vs-sim comparison

Each policy gets its own cache tenant, so every policy starts from the same cache (the warm
entries, or empty) and none profits from latents another policy's run left behind.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path

import numpy as np

from orchestrator.bench.common import Workload, build_workload, simulate, start_full_server
from orchestrator.paths import CPU_PROFILE, RUNS_DIR
from orchestrator.policy.registry import policy_names
from orchestrator.profile.schema import Profile
from orchestrator.sim.simulator import table_metrics
from orchestrator.sim.workload import PromptSource, Request, TraceSource, source_name


@dataclasses.dataclass
class LiveBenchConfig:
    trace: str | TraceSource = "twitter"
    policies: tuple[str, ...] = dataclasses.field(default_factory=policy_names)
    minutes: float = 2.0
    """The trace is compressed to this many minutes; every policy replays all of it."""
    peak_load: float = 1.5
    """Peak offered load as a multiple of the worker's k0 capacity at the SLO (from the profile)."""
    slo_factor: float = 2.0
    """SLO = slo_factor x the k0 batch-1 latency of the profile."""
    prompts: str | PromptSource = "world"
    seed: int = 0
    profile_path: Path = CPU_PROFILE
    out_dir: Path = RUNS_DIR / "live"
    worker: str | None = None
    """gRPC url of a running tritonserver with the whole repository loaded; None starts one."""
    reprofile: bool = True
    """First re-measure the profile's latencies and front-door costs on this run's worker (quality
    table kept), and use that profile for the load scaling, the front doors and the simulator: this
    shared machine's speed drifts by tens of percent between days (k0 took 334 ms on 2026-11-24 and
    430 ms a day later), and a simulator fed yesterday's speed mispredicts today's run."""
    reprofile_batches: tuple[int, ...] = (1, 2, 4, 8)
    """Batch sizes the re-profile measures (each variant's batch latencies price its bookings)."""
    reprofile_repeats: int = 5
    """Timed repeats per variant and batch size in the re-profile (the median is kept)."""
    colocated_families: tuple[str, ...] = ("base", "fast")
    pair_table: Path | None = None
    """Ground-truth triples the front door fits argus's pair predictor on (set for world streams, as
    the simulated side reads the same predictor: ``Workload.pair``)."""
    """The run's tritonserver loads the whole repository, so its worker holds both model families
    (``WorkerState.colocated``): the front doors and the simulator both know it. () models a worker
    that holds one family at a time (a switch loads the other)."""
    speed_bracket: bool = True
    """Time a few batch-of-one generations (``measure_speed``, seconds) before and after each
    policy's replay: that policy's front door serves from the profile scaled to the speed before,
    and its simulation runs on the mean of before and after. Within one run the machine's speed
    moved by more than the whole live/simulated gap (isolated k0 answers took 401-460 ms against
    378 ms profiled minutes before), so without it the simulator predicts another machine."""
    warm_prompts: int = 64
    """Prompts of the same source (those after the stream's) generated at k0 once and inserted into
    every policy's tenant before its replay; its simulation's cache starts with them too. A
    deployment's cache persists (its own pod with a volume), so a two-minute replay from an empty
    one measures a cold start: argus served the first bursts on the fast model for want of cached
    neighbours (12 of 107 answers, 5 of its 7.4 lost quality points, on 2026-12-02). 0: every
    replay starts from an empty cache."""
    grpc_port: int = 18701
    frontdoor_port: int = 18710
    max_queue: int = 512
    """Front-door admission bound; above the trace's backlog so that policies, not admission, decide."""
    drain_timeout_s: float = 240.0
    """After the last arrival, how long a policy's stragglers may take before they count as lost."""
    bin_s: float = 10.0
    """Width of the time bins of the plots."""


@dataclasses.dataclass
class LiveRecord:
    policy: str
    request_id: str
    arrival_s: float
    deadline_s: float
    prompt: str
    seed: int
    variant: str | None = None
    k: int | None = None
    worker: str | None = None
    predicted_quality: float | None = None
    latency_ms: float | None = None
    error: str | None = None
    clip_score: float | None = None
    relative_quality: float | None = None
    eta_ms: float | None = None
    """The router's profile estimate of decision to answer (``Decision.eta_s``), beside the measured latency."""
    same_as_reference: bool | None = None
    """For a k0 answer: bit-identical to the same request generated alone (None for other variants)."""
    k0_image_of_prompt: bool | None = None
    """Bit-identical to a k0 image of its prompt: its own reference, another request's of the same
    text, or a warm generation's (a K variant resumed from the same text's latent finishes that
    generation's trajectory). Such an answer is a full-quality image of the prompt: quality 1."""
    quality_source: str | None = None
    """How relative_quality was scored: ground_truth (a world prompt) or clip (a real prompt)."""
    single_reference_quality: float | None = None
    """CLIP score over its own reference's alone (floored and capped), whatever the image is: the
    scoring before k0 images of the prompt counted as 1, kept for comparison."""
    generation_ms: float | None = None
    """The front door's generation call to Triton for it (the worker's time, without the gate's queue)."""
    batch: int | None = None
    """Requests the dispatch gate sent to Triton with it: the batch its generation time is the latency of."""

    @property
    def served(self) -> bool:
        return self.variant is not None and self.error is None

    @property
    def violated(self) -> bool:
        return not self.served or self.latency_ms is None or self.arrival_s + self.latency_ms / 1000.0 > self.deadline_s


# ------------------------------------------------------------------------------------------- workload
def live_workload(cfg: LiveBenchConfig, profile: Profile, num_workers: int = 1) -> Workload:
    """The stream every policy and the simulator replay: the trace compressed to ``minutes``. Each
    policy's replay starts from an empty cache (its own tenant), so its simulation does too."""
    return build_workload(profile, cfg.trace, num_workers, cfg.peak_load, cfg.minutes * 60.0, cfg.prompts, cfg.slo_factor, cfg.seed,
                          warm_prompts=cfg.warm_prompts)


# ------------------------------------------------------------------------------------------- warm
WARM_SEED = 1_000_000
"""Seeds of the warm generations (apart from the stream's, which start at the run's seed)."""


def tenant_of(policy: str) -> str:
    return f"bench-{policy}"


def generate_warm(worker: str, prompts: tuple[str, ...], log) -> list:
    """The warm prompts generated once at k0 (``WarmBatch``es: their images, and the entries to insert)."""
    import tritonclient.grpc as grpcclient

    from orchestrator.triton.cache import warm_entries

    if not prompts:
        return []
    t = time.perf_counter()
    client = grpcclient.InferenceServerClient(worker)
    try:
        entries = list(warm_entries(client, list(prompts), seed=WARM_SEED))
    finally:
        client.close()
    log(f"warm cache: {len(prompts)} prompts ({len(set(prompts))} distinct) generated at k0 in {time.perf_counter() - t:.0f} s")
    return entries


def fill_tenant(worker: str, tenant: str, entries: list) -> None:
    """Insert the warm entries into one policy's tenant (before its replay)."""
    import tritonclient.grpc as grpcclient

    from orchestrator.triton.cache import insert

    client = grpcclient.InferenceServerClient(worker)
    try:
        for b in entries:
            insert(client, b.embeddings, b.level_latents, [tenant] * len(b.prompts))
    finally:
        client.close()


# ------------------------------------------------------------------------------------------- reprofile
def reprofile(worker: str, cfg: LiveBenchConfig, log) -> Path:
    """The profile's latencies and front-door costs re-measured on ``worker`` now (``argus profile
    --latency-only``), written beside the run's results."""
    from orchestrator.profile.measure import run_profile

    out = cfg.out_dir / "profile.json"
    t = time.perf_counter()
    prof = run_profile(worker, out, 0, 0, cfg.reprofile_repeats, cfg.reprofile_batches, latency_only=True, quality_from=cfg.profile_path)
    fd = prof.frontdoor
    log(f"re-profiled in {time.perf_counter() - t:.0f} s: k0 {prof.variants['k0'].latency_ms[1]:.0f} ms, fast {prof.variants['fast'].latency_ms[1]:.0f} ms "
        f"at batch 1; probe {fd.probe_ms:.1f} ms, front door {fd.overhead_ms:.1f} ms, mixed variants {fd.mixed_slowdown:.2f}x -> {out}")
    return out


# ------------------------------------------------------------------------------------------- bracket
def replay_speed(records: list[LiveRecord], profile: Profile) -> float | None:
    """How many times slower than ``profile`` the worker ran during a replay, from the replay's own
    generation calls: their summed time over the profile's latencies of the same variants and batch
    sizes. Every answer counts, so it measures the speed over the whole replay, on the work the
    policy ran (the bracket times a few isolated batches of one at its ends). None: nothing served."""
    done = [r for r in records if r.served and r.generation_ms is not None]
    predicted = sum(profile.variants[r.variant].batch_latency_ms(r.batch or 1) for r in done)
    return sum(r.generation_ms for r in done) / predicted if predicted > 0 else None


@dataclasses.dataclass
class SpeedBracket:
    """The worker's speed around one policy's replay, as multiples of the run's profile latencies."""

    before: float = 1.0
    after: float = 1.0

    @property
    def during(self) -> float:
        """The simulator's estimate of the speed during the replay: the mean of both ends."""
        return 0.5 * (self.before + self.after)


def speed_check(worker: str):
    """A callable returning the worker's slowdown against a profile now (``measure_speed``)."""
    from orchestrator.profile.measure import LivePath, measure_speed
    from orchestrator.triton.repository import RepositoryConfig

    path = LivePath.connect(worker, RepositoryConfig().cached_levels)
    return lambda profile: measure_speed(path, profile)


# ------------------------------------------------------------------------------------------- replay
def replay(policy: str, requests: list[Request], worker: str, cfg: LiveBenchConfig, images: dict, progress=None) -> list[LiveRecord]:
    """Open-loop: each request leaves at its arrival time whatever the answers so far."""
    import tritonclient.grpc as grpcclient

    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.frontdoor import serve
    from orchestrator.triton.client import infer_input

    fd = FrontDoorConfig.for_measurement(worker, cfg.profile_path, policy, cfg.frontdoor_port, max_queue=cfg.max_queue,
                                         colocated_families=cfg.colocated_families, pair_table=cfg.pair_table,
                                         default_slo_ms=requests[0].slo_ms if requests else 5000.0)
    server, engine = serve(fd)
    records = {r.request_id: LiveRecord(policy, r.request_id, r.arrival_s, r.arrival_s + r.slo_ms / 1000.0, r.prompt, r.seed) for r in requests}
    done = threading.Event()
    lock = threading.Lock()
    pending = [len(requests)]
    sent_at: dict[str, float] = {}

    def finish(rid: str, result, error) -> None:
        rec = records[rid]
        rec.latency_ms = 1000.0 * (time.monotonic() - sent_at[rid])
        if error is not None:
            rec.error = f"{error.status()}: {error.message()}"
        else:
            params = result.get_response().parameters
            rec.variant = params["variant"].string_param
            rec.k = int(params["k"].string_param)
            rec.worker = params["worker"].string_param
            rec.eta_ms = float(params["eta_ms"].string_param) if "eta_ms" in params else None
            rec.predicted_quality = float(params["predicted_quality"].string_param)
            rec.generation_ms = float(params["generation_ms"].string_param)
            rec.batch = int(params["batch"].string_param)
            images[(policy, rid)] = result.as_numpy("IMAGE")
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                done.set()
        if progress is not None:
            progress()

    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{cfg.frontdoor_port}")
        t0 = time.monotonic()
        for r in requests:
            time.sleep(max(0.0, t0 + r.arrival_s - time.monotonic()))
            inputs = [infer_input("PROMPT", np.array([r.prompt.encode()], dtype=np.object_), "BYTES"),
                      infer_input("SEED", np.array([r.seed], dtype=np.int64), "INT64"),
                      infer_input("SLO_MS", np.array([r.slo_ms], dtype=np.float32), "FP32"),
                      infer_input("TENANT", np.array([tenant_of(policy).encode()], dtype=np.object_), "BYTES")]
            sent_at[r.request_id] = time.monotonic()
            client.async_infer("t2i", inputs, lambda result, error, rid=r.request_id: finish(rid, result, error), request_id=r.request_id,
                               client_timeout=cfg.drain_timeout_s)
        if requests and not done.wait(cfg.drain_timeout_s + 10):
            for rec in records.values():
                if rec.variant is None and rec.error is None:
                    rec.error = "LOST: no answer within the drain timeout"
        client.close()
    finally:
        server.stop(0)
        engine.close()
    return [records[r.request_id] for r in requests]


# ------------------------------------------------------------------------------------------- reference + score
def reference_images(requests: list[Request], worker: str) -> dict[str, np.ndarray]:
    """The k0 image of each request's (prompt, seed), generated alone (batch of one, nothing else
    running) after the replays: what the same request gives on an idle server."""
    import tritonclient.grpc as grpcclient

    from orchestrator.triton.client import generate

    client = grpcclient.InferenceServerClient(worker)
    refs = {r.request_id: generate(client, [r.prompt], [r.seed], "k0", timeout_s=600)[0] for r in requests}
    client.close()
    return refs


def score(records: list[LiveRecord], images: dict, refs: dict[str, np.ndarray], requests: list[Request],
          warm_images: dict[str, list[np.ndarray]] | None = None) -> None:
    """Relative quality of every returned image against its k0 reference: by ground truth for world
    prompts (``ground_truth_quality``), by CLIP score for real prompts, with the profile's floor
    and cap (``tiny_model.quality.relative_quality``). An answer bit-identical to a k0 image of its
    prompt (its own reference, another request's of the same text, a warm generation's) is quality
    1 exactly: it is a full-quality image of that prompt, as the simulator scores an exact cache
    match. Rated against one reference of another seed it scored 0.89 on average (median 0.95) in
    a run where 70 of argus's 83 K answers were such images: the ratio of two CLIP scores of the
    same prompt (std 21 around 54) capped at 1.5 is not 1 on average. Each k0 answer records
    whether it is its own reference (``same_as_reference``): the reproducibility check."""
    from tiny_model.quality import RELATIVE_FLOOR, QualityScorer, relative_quality

    scorer = QualityScorer()
    ref_ids = [r.request_id for r in requests]
    ref_scores = dict(zip(ref_ids, _clip(scorer, np.stack([refs[i] for i in ref_ids]), [r.prompt for r in requests])))
    base_all = np.array(list(ref_scores.values()))
    served = [r for r in records if r.served]
    if not served:
        return
    scores = _clip(scorer, np.stack([images[(r.policy, r.request_id)] for r in served]), [r.prompt for r in served])
    base = np.array([ref_scores[r.request_id] for r in served])
    # The floor is relative to the mean reference score of the whole stream, as in the profile.
    rel = relative_quality(scores, np.maximum(base, RELATIVE_FLOOR * float(np.mean(base_all))))
    k0_images: dict[str, list[np.ndarray]] = {p: list(ims) for p, ims in (warm_images or {}).items()}
    for r in requests:
        k0_images.setdefault(r.prompt, []).append(refs[r.request_id])
    truth = ground_truth_quality(served, images, refs)
    for rec, s, q in zip(served, scores, rel):
        image = images[(rec.policy, rec.request_id)]
        same = bool(np.array_equal(image, refs[rec.request_id]))
        rec.k0_image_of_prompt = same or any(np.array_equal(image, k0) for k0 in k0_images[rec.prompt])
        rec.clip_score = float(s)
        rec.single_reference_quality = 1.0 if same else float(q)
        key = (rec.policy, rec.request_id)  # every policy replays the same request ids
        rec.quality_source = "ground_truth" if key in truth else "clip"
        rec.relative_quality = 1.0 if rec.k0_image_of_prompt else truth.get(key, float(q))
        if rec.variant == "k0":
            rec.same_as_reference = same


def ground_truth_quality(served: list[LiveRecord], images: dict, refs: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """World prompts, by ground truth against the prompt's own specification: the answer's share of
    named attributes the check confirms over its k0 reference's (floored and capped as the CLIP ratio).
    A CLIP ratio of one image moved live quality by about +-7 points between runs; ground truth does
    not depend on a second model. Real prompts (no specification) are absent: they keep the CLIP ratio."""
    from tiny_model.gt_eval import attribute_accuracy
    from tiny_model.quality import relative_quality
    from tiny_model.world import ground_truth_check, parse_caption

    world = [r for r in served if parse_caption(r.prompt) is not None]
    if not world:
        return {}
    answer = np.array([attribute_accuracy(ground_truth_check(images[(r.policy, r.request_id)], r.prompt)) for r in world])
    reference = np.array([attribute_accuracy(ground_truth_check(refs[r.request_id], r.prompt)) for r in world])
    return {(r.policy, r.request_id): float(q) for r, q in zip(world, relative_quality(answer, reference))}


def _clip(scorer, imgs: np.ndarray, prompts: list[str], batch: int = 256) -> np.ndarray:
    return np.concatenate([scorer.clip_score(imgs[i:i + batch], prompts[i:i + batch]) for i in range(0, len(prompts), batch)])


# ------------------------------------------------------------------------------------------- report
def summarize_live(records: list[LiveRecord], duration_s: float) -> dict:
    served = [r for r in records if r.served]
    ok = [r for r in served if not r.violated]
    errors: dict[str, int] = {}
    for r in records:
        if r.error:
            key = r.error.split(":")[0]
            errors[key] = errors.get(key, 0) + 1
    return {
        **table_metrics(len(records), sum(r.violated for r in records), [r.variant for r in served], [r.relative_quality for r in served],
                        len(ok), duration_s),
        "p99_latency_ms": float(np.percentile([r.latency_ms for r in served], 99)) if served else None,
        "errors": errors,
        "lost": sum(1 for r in records if r.error and r.error.startswith("LOST")),
        "k0_answers": sum(1 for r in served if r.variant == "k0"),
        "k0_differs_from_alone": sum(1 for r in served if r.same_as_reference is False),
        "k0_image_answers": sum(1 for r in served if r.k0_image_of_prompt),
        "mean_quality_single_reference": float(np.mean([r.single_reference_quality for r in served])) if served else 0.0,
    }


def ranking(rows: dict[str, dict], key: str, higher_is_better: bool) -> list[str]:
    """Policies best first by one metric (ties broken by name, so equal values rank stably)."""
    return sorted(rows, key=lambda p: ((-1 if higher_is_better else 1) * round(rows[p][key], 6), p))


METRICS = (("slo_violation_pct", False), ("mean_quality", True), ("goodput_rps", True))


def compare(live: dict[str, dict], sim: dict[str, dict]) -> dict:
    """Per metric: both rankings, whether they agree, and the live-minus-sim difference per policy."""
    out = {}
    for key, higher in METRICS:
        lr, sr = ranking(live, key, higher), ranking(sim, key, higher)
        out[key] = {"live_ranking": lr, "sim_ranking": sr, "same_ranking": lr == sr, "same_best": lr[0] == sr[0],
                    "live_minus_sim": {p: live[p][key] - sim[p][key] for p in live}}
    return out


def plot(records: list[LiveRecord], policies: list[str], duration_s: float, bin_s: float, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.arange(0.0, duration_s + bin_s, bin_s)
    arrivals = {}
    paths = []
    for metric, ylabel, fname in (("quality", "mean relative quality (served)", "quality_over_time.png"),
                                  ("violations", "SLO violations (% of arrivals)", "violations_over_time.png")):
        fig, ax = plt.subplots(figsize=(8, 4))
        for p in policies:
            recs = [r for r in records if r.policy == p]
            t = np.array([r.arrival_s for r in recs])
            idx = np.clip(np.digitize(t, edges) - 1, 0, len(edges) - 2)
            ys = []
            for b in range(len(edges) - 1):
                in_bin = [r for r, i in zip(recs, idx) if i == b]
                if metric == "quality":
                    q = [r.relative_quality for r in in_bin if r.served and r.relative_quality is not None]
                    ys.append(np.mean(q) if q else np.nan)
                else:
                    ys.append(100.0 * np.mean([r.violated for r in in_bin]) if in_bin else np.nan)
            ax.plot(edges[:-1] + bin_s / 2, ys, marker="o", markersize=3, label=p)
            arrivals[p] = len(recs)
        ax.set_xlabel("trace time (s)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def run_live_bench(cfg: LiveBenchConfig, console=None) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    t_start = time.perf_counter()
    log = console.print if console else print
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    server = None
    worker = cfg.worker
    if worker is None:
        server = start_full_server(cfg.grpc_port, cfg.out_dir / "tritonserver.log")
        worker = server.config.grpc_url
        log(f"tritonserver ready at {worker} in {time.perf_counter() - t_start:.0f} s")
    images: dict = {}
    records: list[LiveRecord] = []
    wall: dict[str, float] = {}
    speed: dict[str, SpeedBracket] = {}
    try:
        if cfg.reprofile:
            cfg = dataclasses.replace(cfg, profile_path=reprofile(worker, cfg, log))
        profile = Profile.load(cfg.profile_path)
        wl = live_workload(cfg, profile)
        if wl.pair is not None and cfg.pair_table is None:
            from orchestrator.paths import CPU_PAIRS

            cfg = dataclasses.replace(cfg, pair_table=CPU_PAIRS)
        trace, requests, slo_ms, capacity = wl.trace, wl.requests, wl.slo_ms, wl.capacity_rps
        log(f"trace {trace.name}: {len(requests)} requests over {trace.duration_s:.0f} s, peak {cfg.peak_load}x the k0 capacity "
            f"({capacity:.2f} req/s at SLO {slo_ms / 1000:.2f} s), {source_name(cfg.prompts)} prompts; policies {', '.join(cfg.policies)}")
        warm = generate_warm(worker, wl.warm_prompts, log)
        warm_images: dict[str, list[np.ndarray]] = {}
        for b in warm:
            for p, im in zip(b.prompts, b.images):
                warm_images.setdefault(p, []).append(im)
        check = speed_check(worker) if cfg.speed_bracket else None
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                      disable=console is None) as bar:
            for policy in cfg.policies:
                task = bar.add_task(f"{policy:>10}", total=len(requests))
                fill_tenant(worker, tenant_of(policy), warm)
                t = time.perf_counter()
                pcfg = cfg
                if check is not None:
                    speed[policy] = SpeedBracket(before=check(profile))
                    pcfg = dataclasses.replace(cfg, profile_path=cfg.out_dir / f"profile_{policy}.json")
                    profile.scaled(speed[policy].before, f" (speed check before the {policy} replay)").save(pcfg.profile_path)
                records += replay(policy, requests, worker, pcfg, images, progress=lambda task=task: bar.advance(task))
                if check is not None:
                    speed[policy].after = check(profile)
                wall[policy] = time.perf_counter() - t
        t = time.perf_counter()
        refs = reference_images(requests, worker)
        log(f"k0 references: {len(refs)} ({time.perf_counter() - t:.0f} s)")
    finally:
        if server is not None:
            server.stop()
    score(records, images, refs, requests, warm_images)
    rows = {p: {**summarize_live([r for r in records if r.policy == p], trace.duration_s), "replay_wall_s": wall[p]} for p in cfg.policies}
    sim_unbracketed = simulate(profile, requests, 1, cfg.policies, trace.duration_s, slo_ms, wl.make_world, cfg.colocated_families,
                               pair=wl.pair)
    sim_bracketed = {p: simulate(profile.scaled(speed[p].during), requests, 1, (p,), trace.duration_s, slo_ms, wl.make_world,
                                 cfg.colocated_families, pair=wl.pair)[p]
                     for p in cfg.policies} if speed else sim_unbracketed
    during = {p: replay_speed([r for r in records if r.policy == p], profile) for p in cfg.policies}
    sim_rows = {p: simulate(profile.scaled(during[p]) if during[p] else profile, requests, 1, (p,), trace.duration_s, slo_ms, wl.make_world,
                            cfg.colocated_families, decision_profile=profile.scaled(speed[p].before) if speed else profile, pair=wl.pair)[p]
                for p in cfg.policies}
    comparison = compare(rows, sim_rows)
    with (cfg.out_dir / "records.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps({**dataclasses.asdict(r), "violated": r.violated}) + "\n")
    plots = plot(records, list(cfg.policies), trace.duration_s, cfg.bin_s, cfg.out_dir)
    result = {"trace": trace.name, "prompts": source_name(cfg.prompts), "requests": len(requests), "duration_s": trace.duration_s, "slo_ms": slo_ms,
              "k0_capacity_rps": capacity, "peak_load": cfg.peak_load, "profile": str(cfg.profile_path), "warm_prompts": len(wl.warm_prompts), "live": rows, "sim": sim_rows,
              "sim_bracketed": sim_bracketed, "sim_at_profile_speed": sim_unbracketed,
              "speed": {p: {**({**dataclasses.asdict(speed[p]), "during": speed[p].during} if p in speed else {}), "replay": during[p]}
                        for p in cfg.policies},
              "live_vs_sim": comparison, "plots": [p.name for p in plots], "wall_s": time.perf_counter() - t_start}
    (cfg.out_dir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    if console:
        print_tables(result, console)
    return result


def print_tables(result: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"live vs simulated: {result['trace']}, {result['requests']} requests over {result['duration_s']:.0f} s, 1 worker, "
                        f"SLO {result['slo_ms'] / 1000:.2f} s, peak {result['peak_load']}x k0 capacity")
    for col in ("policy", "viol. % live", "sim", "quality live", "sim", "goodput live", "sim", "throughput live", "p99 ms live"):
        table.add_column(col, justify="right")
    for p, r in result["live"].items():
        s = result["sim"][p]
        table.add_row(p, f"{r['slo_violation_pct']:.1f}", f"{s['slo_violation_pct']:.1f}", f"{r['mean_quality']:.3f}", f"{s['mean_quality']:.3f}",
                      f"{r['goodput_rps']:.3f}", f"{s['goodput_rps']:.3f}", f"{r['throughput_rps']:.3f}",
                      f"{r['p99_latency_ms']:.0f}" if r["p99_latency_ms"] is not None else "-")
    console.print(table)
    if result.get("speed"):
        console.print("speed vs the profile, before -> after each replay, and during it (its generation calls; the simulation runs at it): "
                      + ", ".join(f"{p} {s.get('before', 1):.2f}->{s.get('after', 1):.2f}, {s['replay'] or 1:.2f}"
                                  for p, s in result["speed"].items()))
    for key, c in result["live_vs_sim"].items():
        console.print(f"{key}: live {' > '.join(c['live_ranking'])} | sim {' > '.join(c['sim_ranking'])} | "
                      f"{'same ranking' if c['same_ranking'] else ('same best' if c['same_best'] else 'rankings differ')}")
    console.print(f"wall {result['wall_s']:.0f} s; records, summary.json and plots in the results directory")
