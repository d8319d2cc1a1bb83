"""``argus``: the command line of the project."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from orchestrator.paths import CPU_PAIRS, CPU_PAIRS_RETEST, CPU_PROFILE

app = typer.Typer(help="Quality-aware text-to-image serving on NVIDIA Triton.", no_args_is_help=True, add_completion=False)
triton_app = typer.Typer(help="Run a detached tritonserver with the project's model repository.", no_args_is_help=True)
repo_app = typer.Typer(help="Write the Triton model repository.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks (they print ratios measured side by side in one run).", no_args_is_help=True)
app.add_typer(triton_app, name="triton")
app.add_typer(repo_app, name="repo")
cache_app = typer.Typer(help="The approximate cache (cache_retrieval model).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(cache_app, name="cache")
console = Console(width=max(Console().width, 140))


def _levels(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(x) for x in text.split(",") if x.strip()}))


@triton_app.command("up")
def triton_up(
    grpc_port: int = typer.Option(18101, help="gRPC port; HTTP is grpc-1, metrics grpc+1."),
    models: str = typer.Option("", help="Comma-separated models to load (default: every variant)."),
    repository: Optional[Path] = typer.Option(None, help="Another model repository (e.g. build-engines' output); default the project's."),
):
    """Start tritonserver in the background and wait until it is ready."""
    from orchestrator.triton.server import up_detached

    console.print_json(json.dumps(up_detached(grpc_port, tuple(m for m in models.split(",") if m), repository)))


@triton_app.command("down")
def triton_down(grpc_port: int = typer.Option(18101)):
    """Stop the background tritonserver (SIGTERM, then SIGKILL)."""
    from orchestrator.triton import server

    console.print("stopped" if server.down(grpc_port) else "not running")


@triton_app.command("status")
def triton_status(grpc_port: int = typer.Option(18101)):
    """Whether the background server runs, and which models are ready."""
    from orchestrator.triton.server import status_with_models

    console.print_json(json.dumps(status_with_models(grpc_port)))


@repo_app.command("write")
def repo_write(
    out: Path = typer.Option(None, help="Output directory (default: the project's model_repository/)."),
    levels: str = typer.Option("0,5,10,15,20,25", help="Step-skip levels K, one variant each."),
    steps: int = typer.Option(50, help="Full schedule length of the base model."),
):
    """Write every config.pbtxt (and the UNets' and denoisers' one-line model.py) for a set of step-skip levels."""
    from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, write_repository

    files = write_repository(RepositoryConfig(step_skip_levels=_levels(levels), num_inference_steps=steps), out or PROJECT_REPOSITORY)
    console.print(f"wrote {len(files)} files to {out or PROJECT_REPOSITORY}")


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The prompt."),
    output: Path = typer.Option(Path("out.png"), "-o", "--output"),
    k: int = typer.Option(0, "--k", help="Step-skip level: start from the latent at step K of --source's generation."),
    seed: int = typer.Option(0, "--seed"),
    source: Optional[str] = typer.Option(None, help="Prompt whose intermediate latent K>0 starts from (default: the prompt itself)."),
    fast: bool = typer.Option(False, help="Use the fast model instead."),
    url: str = typer.Option("127.0.0.1:18101", help="Triton gRPC address (see `argus triton up`)."),
    scale: int = typer.Option(4, help="Nearest-neighbour upscaling of the saved PNG (1 = native 32x32)."),
):
    """Generate one image through Triton over gRPC and write it as PNG."""
    from orchestrator.triton.client import generate_png

    try:
        console.print(f"wrote {generate_png(url, prompt, output, k, seed, source, fast, scale)}")
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command()
def perf(
    model: str = typer.Option("t2i_k0", help="Model to load-test (a t2i_* ensemble)."),
    url: str = typer.Option("127.0.0.1:18101"),
    concurrency: str = typer.Option("1:2", help="perf_analyzer --concurrency-range."),
    interval_ms: int = typer.Option(4000),
    batch: int = typer.Option(1),
    csv: Optional[Path] = typer.Option(None, help="Write perf_analyzer's CSV here."),
    stability_pct: int = typer.Option(50, help="Allowed variation between windows (raise it on a busy machine)."),
    protocol: str = typer.Option("grpc", "-i", "--protocol", help="grpc or http (then --url is the HTTP port's host:port)."),
):
    """Run perf_analyzer (from tritonclient 2.51) against a running server or the front door."""
    from orchestrator.triton.perf import run_perf

    if protocol not in ("grpc", "http"):
        raise typer.BadParameter(f"--protocol must be grpc or http, not {protocol!r}")
    raise typer.Exit(run_perf(model, url, concurrency, interval_ms, csv, batch, stability_pct, protocol))


@app.command("train-embedded")
def train_embedded(
    smoke: bool = typer.Option(False, help="A few steps of every phase (for CI); writes to --out."),
    out: Optional[Path] = typer.Option(None, help="Weights directory (default: tiny_model/weights)."),
    seed: int = typer.Option(0),
    recipe: str = typer.Option("stages", help="stages (the shipped weights: the seed recipe, then every gated stage), seed (stage 0 alone) "
                                              "or long (the earlier long recipe)."),
    ckpt: Optional[Path] = typer.Option(None, help="Checkpoint directory: a stopped run resumes from it (default for long: runs/train_long)."),
):
    """Reproduce the embedded model's weights from a seed."""
    from tiny_model.stages import train_command

    if recipe not in ("stages", "seed", "long"):
        raise typer.BadParameter(f"--recipe must be stages, seed or long, not {recipe!r}")
    console.print_json(json.dumps(train_command(smoke, out, seed, recipe, ckpt)))


@app.command("eval-embedded")
def eval_embedded(
    out_dir: Path = typer.Option(Path("docs"), help="Where embedded_model.json (and embedded_model.md, the grid) go."),
    ground_truth_only: bool = typer.Option(False, help="Only the seed-averaged ground-truth evaluation (embedded_model.json)."),
    prompts_per_kind: int = typer.Option(32, help="Prompts per difficulty class (simple, medium, hard, counting); 31 min at 32 x 4 seeds."),
    seeds: int = typer.Option(4, help="Generations per prompt and variant (the noise floor needs at least 4)."),
):
    """Measure the embedded model: ground truth per attribute over seeds, the cost of each approximation, latency."""
    from tiny_model.evaluate import eval_command

    console.print("wrote " + ", ".join(str(p) for p in eval_command(out_dir, ground_truth_only, prompts_per_kind, seeds)))


QT_HELP = "A quality table (CSV/TSV, gzip or not): per prompt, model and seed a score (see --table-layout)."
# The quality table's options, one definition for every command that reads a table.
FAST_OPT = typer.Option("sdxl-lightning-2step", help="--quality-table: the fast model's name in the table.")
BASE_OPT = typer.Option("sd3.5-large-50step", help="--quality-table: the base (heavy) model's name in the table.")
LAYOUT_OPT = typer.Option("long", help="--quality-table: long (a row per prompt, model, seed and score) or wide (a score column per model).")
PROMPT_COLUMN_OPT = typer.Option("prompt", help="--quality-table: the prompt column.")
MODEL_COLUMN_OPT = typer.Option("model", help="Long layout: the model column.")
SEED_COLUMN_OPT = typer.Option("seed", help="The seed column ('' if none).")
SCORE_COLUMN_OPT = typer.Option("p_real", help="Long layout: the score column.")
MODELS_OPT = typer.Option("", help="Wide layout: comma-separated score columns (default: all but prompt and seed).")
SCORE_KIND_OPT = typer.Option("probability", help="probability (scores near 0 or 1: compared as logits) or raw.")


def _table_format(layout: str, prompt_column: str, model_column: str, seed_column: str, score_column: str, models: str, score_kind: str):
    from orchestrator.sim.quality_table import QualityTableFormat

    return QualityTableFormat(layout, prompt_column, model_column, seed_column, score_column,
                              tuple(m.strip() for m in models.split(",") if m.strip()), score_kind)


@app.command("eval-predictor")
def eval_predictor(profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"),
                   pairs: Path = typer.Option(CPU_PAIRS, help="Ground-truth triples (argus build-pairs)."),
                   retest: Path = typer.Option(CPU_PAIRS_RETEST, help="The same triples measured with other seeds (argus build-pairs "
                                               "--retest): printed beside the predictor, per variant, as the labels' own ceiling; "
                                               "skipped when the file is absent."),
                   folds: int = typer.Option(4, help="Template-grouped folds (with --quality-table: folds split by prompt text)."),
                   as_json: bool = typer.Option(False, "--json", help="Print only the JSON object."),
                   per_prompt: bool = typer.Option(False, help="The per-prompt predictor on the profile's quality table instead."),
                   quality_table: Optional[Path] = typer.Option(None, help=QT_HELP),
                   fast: str = FAST_OPT, base: str = BASE_OPT, table_layout: str = LAYOUT_OPT, table_prompt_column: str = PROMPT_COLUMN_OPT,
                   model_column: str = MODEL_COLUMN_OPT, seed_column: str = SEED_COLUMN_OPT, score_column: str = SCORE_COLUMN_OPT,
                   models: str = MODELS_OPT, score_kind: str = SCORE_KIND_OPT):
    """Held-out quality prediction on templates never trained on: MAE vs the mean, Spearman, oracle picks, calibration.
    With --quality-table: the fast model's quality per prompt from its text, against TF-IDF + ridge and the mean."""
    from orchestrator.bench.predictor import run_eval

    fmt = _table_format(table_layout, table_prompt_column, model_column, seed_column, score_column, models, score_kind)
    with _input_errors():
        result = run_eval(profile_path, None if per_prompt else pairs, folds, None if as_json else console,
                          labels=(quality_table, fast, base, fmt) if quality_table is not None else None, retest=retest)
    _emit(result, as_json)


@app.command("build-pairs")
def build_pairs(out: Path = typer.Option(CPU_PAIRS), scenes_per_kind: int = typer.Option(16), seeds: int = typer.Option(4),
                profiles: list[Path] = typer.Option(None, "--profile", help="Profiles that carry the ground-truth table and its calibrated "
                                                    "thresholds (default: every profile in profiles/)."),
                from_pairs: bool = typer.Option(False, "--from-pairs", help="Reuse the triples already at --out (no generation)."),
                retest: Optional[Path] = typer.Option(None, help="Only measure the same triples (same --scenes-per-kind) again "
                                                      f"with the next --seeds seeds, independent of the first, into this file, e.g. {CPU_PAIRS_RETEST}; "
                                                      "`argus eval-predictor` reads it for the labels' test-retest ceiling.")):
    """Generate (prompt, cached source, K) triples and fast pairs scored by ground truth (the pair predictor's data), and write
    the simulator's ground-truth table keyed by what differs, with per-K thresholds calibrated from it, into the profiles."""
    from orchestrator.paths import DOCS_DIR
    from orchestrator.sim.world import build_pairs as build

    build(out, profiles or sorted(CPU_PAIRS.parent.glob("*.json")), DOCS_DIR / "sim_ground_truth.md", scenes_per_kind, seeds,
          generate=not from_pairs, retest=retest, log=console.print)


@app.command("calibrate-reuse")
def calibrate_reuse(profiles: list[Path] = typer.Option(None, "--profile", help="Default: every profile in profiles/ (the first one's "
                                                       "ground-truth table is read)."),
                    n: int = typer.Option(3000, help="Requests per stream."), warm: int = typer.Option(1000, help="Cached prompts before each stream."),
                    write: bool = typer.Option(False, "--write", help="Write the thresholds into the profiles."),
                    as_json: bool = typer.Option(False, "--json")):
    """The cache thresholds per K (the larger of the ground-truth quality threshold and NIRVANA's published one mapped onto
    this encoder by the default stream's reuse), and NIRVANA's K mix through the simulator's cache under them, against the
    real DiffusionDB log's (../shared/data/reuse)."""
    from orchestrator.sim.reuse import calibration_report

    _emit(calibration_report(profiles or [CPU_PROFILE, *sorted(p for p in CPU_PAIRS.parent.glob("*.json") if p != CPU_PROFILE)], n, warm,
                             write, log=(lambda *a: None) if as_json else console.print), as_json)


@app.command()
def demo(out_dir: Path = typer.Option(Path("runs/demo")), grpc_port: int = typer.Option(18201)):
    """The main job: start Triton, serve a short workload at every variant, score it, write a report."""
    from orchestrator.bench.demo import DemoConfig, run_demo_report

    run_demo_report(DemoConfig(out_dir=out_dir, grpc_port=grpc_port), console)


@cache_app.command("warm")
def cache_warm(
    prompts: Path = typer.Option(..., help="Text file, one prompt per line (empty lines skipped)."),
    url: str = typer.Option("127.0.0.1:18101"),
    limit: int = typer.Option(0, help="Use only the first N prompts (0: all)."),
    tenant: Optional[str] = typer.Option(None, help="Fill this tenant's partition instead of the shared one."),
):
    """Fill the cache from a prompt list: generate each at K=0 and insert its intermediate latents."""
    from orchestrator.triton.cache import warm_from_file

    console.print(f"inserted {warm_from_file(url, prompts, limit, tenant, console)} generations")


@cache_app.command("stats")
def cache_stats(url: str = typer.Option("127.0.0.1:18102", help="Triton's metrics address (host:port).")):
    """The cache's custom metrics (hit rate by K, entries, bytes, evictions) from Triton's /metrics."""
    from orchestrator.triton.cache import metrics_text

    console.print(metrics_text(url))


@app.command()
def profile(
    url: str = typer.Option("127.0.0.1:18101", help="A Triton worker with every variant loaded."),
    out: Path = typer.Option(Path("profiles/cpu_tiny.json")),
    prompts: int = typer.Option(96, help="Training prompts for the quality table."),
    pool: int = typer.Option(240, help="Earlier generations the K variants reuse latents from."),
    repeats: int = typer.Option(3),
    batches: str = typer.Option("1,2,4,8"),
    latency_only: bool = typer.Option(False, help="Keep the quality table of the existing --out profile; re-measure latencies."),
):
    """Measure latency per variant and batch through Triton and quality per prompt and variant; write the profile."""
    from orchestrator.profile.measure import run_profile

    run_profile(url, out, prompts, pool, repeats, _levels(batches), latency_only, console)


@app.command()
def serve(
    policy: str = typer.Option("argus", help="A registered policy: argus | argus-noprompt | clipper-ha | clipper-ht | nirvana | proteus"),
    workers: str = typer.Option("", help="Comma-separated Triton gRPC endpoints; empty: start --local-workers servers here."),
    cache: Optional[str] = typer.Option(None, help="The cache endpoint (host:port serving t2i_probe and cache_retrieval); default the first worker."),
    local_workers: int = typer.Option(1),
    local_base_port: int = typer.Option(18600, help="Local worker i uses HTTP/gRPC/metrics ports base+10i .. base+10i+2."),
    variants: str = typer.Option("", help="Comma-separated variants local workers load (default: all)."),
    profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"),
    port: int = typer.Option(18500, help="KServe v2 gRPC port."),
    http_port: int = typer.Option(18501, help="KServe v2 HTTP/REST and OpenAI Images API port (0: no HTTP)."),
    metrics_port: int = typer.Option(18502),
    address: str = typer.Option("127.0.0.1", help="Bind address of the front door and its metrics (loopback unless told otherwise)."),
    slo_ms: float = typer.Option(5000.0, help="Default SLO for requests that send none."),
    auth_token: Optional[str] = typer.Option(None, envvar="ARGUS_AUTH_TOKEN", help="Require 'authorization: Bearer <token>'."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without a token (deliberately; default generates one)."),
    tenants: str = typer.Option("", help="Comma-separated known tenants; others get INVALID_ARGUMENT (default: any)."),
    max_queue: int = typer.Option(64, help="Admitted requests in flight at most; beyond it RESOURCE_EXHAUSTED."),
    drain_timeout_s: float = typer.Option(30.0, help="On SIGTERM, how long in-flight requests may take."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where local workers persist the approximate cache."),
    scorer: Optional[Path] = typer.Option(None, help="Score served images with this local transformers CLIPModel directory "
                                                     "(default: the embedded tiny CLIP)."),
    pair_table: Optional[Path] = typer.Option(None, help="Ground-truth triples (argus build-pairs, e.g. profiles/cpu_tiny.pairs.npz): "
                                                         "fit the pair predictor on them and resume each K variant from the "
                                                         "cached source it predicts best (default: the most similar)."),
    colocate: str = typer.Option("", help="Comma-separated model families every worker holds at once (base,fast when each "
                                          "tritonserver loads the whole repository): the router may then serve the fast model "
                                          "on a base worker without a switch. Default: one family per worker."),
    log_level: str = typer.Option("INFO", help="DEBUG logs full prompts; other levels never do."),
):
    """Run the front door (model 't2i' over KServe v2 gRPC and HTTP, and POST /v1/images/generations) in
    front of a cluster of Triton workers.

    SIGTERM/SIGINT drain: no new admissions, in-flight requests finish (up to --drain-timeout-s),
    local tritonservers stop (their cache is persisted), exit 0."""
    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.main import LocalWorkers, run_server

    cfg = FrontDoorConfig(workers=[w for w in workers.split(",") if w], cache=cache, profile_path=profile_path, policy=policy, address=address, port=port,
                          http_port=http_port or None, metrics_port=metrics_port, default_slo_ms=slo_ms, auth_token=auth_token,
                          tenants=frozenset(t for t in tenants.split(",") if t) or None, max_queue=max_queue, drain_timeout_s=drain_timeout_s,
                          colocated_families=_colocated(colocate), scorer_dir=scorer, pair_table=pair_table)
    local = LocalWorkers(local_workers, local_base_port, tuple(v for v in variants.split(",") if v), cache_dir)
    run_server(cfg, local, no_auth, log_level, echo=console.print)


def _colocated(spec: str) -> tuple[str, ...]:
    fams = tuple(f for f in spec.split(",") if f)
    bad = [f for f in fams if f not in ("base", "fast")]
    if bad:
        raise typer.BadParameter(f"unknown model families {bad}: the families are base and fast", param_hint="--colocate")
    return fams


@bench_app.command("serving")
def bench_serving(
    requests: int = typer.Option(24, help="Requests per variant and mode."),
    concurrency: int = typer.Option(4),
    grpc_port: int = typer.Option(18301),
):
    """Images/s and p50/p99 latency of t2i_k0 vs t2i_k25 through Triton, and Triton vs in-process."""
    from orchestrator.bench.serving import ServingBenchConfig, run_serving_bench

    run_serving_bench(ServingBenchConfig(requests=requests, concurrency=concurrency, grpc_port=grpc_port), console)


TRACE_HELP = "twitter | azure-code | azure-conv | servegen-mm | maf, or a file: CSV/TSV or JSON Lines, optionally gzip"
PROMPTS_HELP = "world (real reuse, calibrated to NIRVANA's K mix on DiffusionDB) | world-heavy (mostly repeats) | diffusiondb | parti | drawbench, or a file: text (one per line), CSV/TSV or JSON Lines"


def _sources(trace: str, time_column: str | None, time_unit: str, time_field: str | None, prompts: str, prompt_column: str | None):
    """The trace and prompt sources of a bench command (bundled names stay shortcuts)."""
    from orchestrator.sim.workload import PromptSource, TraceSource

    return TraceSource(trace, time_column, time_unit, time_field), PromptSource(prompts, prompt_column)


@contextlib.contextmanager
def _input_errors():
    """A user's unreadable trace or prompt file: one line naming file and row, exit 2; no traceback."""
    from orchestrator.sim.inputs import InputFileError
    from orchestrator.sim.workload import TraceError

    try:
        yield
    except (InputFileError, TraceError, FileNotFoundError) as e:
        console.print(f"[red]error:[/red] {e}", soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


@bench_app.command("sim")
def bench_sim(
    profile_path: Optional[Path] = typer.Option(None, "--profile", help="Default: a measured gpu_sdxl_<gpu>.json if committed, else the cited A100 one."),
    trace: str = typer.Option("twitter", help=TRACE_HELP),
    time_column: Optional[str] = typer.Option(None, help="CSV/TSV trace: the arrival-time column."),
    time_unit: str = typer.Option("s", help="Numeric trace times: s, ms or us."),
    time_field: Optional[str] = typer.Option(None, help="JSON Lines trace: the arrival-time field."),
    workers: int = typer.Option(8),
    peak_load: float = typer.Option(1.5, help="Peak load as a multiple of the cluster's k0 capacity."),
    duration_s: Optional[float] = typer.Option(None, help="Compress the trace to this many seconds."),
    prompts: str = typer.Option("world", help=PROMPTS_HELP),
    prompt_column: Optional[str] = typer.Option(None, help="CSV/TSV column or JSON Lines field of a prompt file."),
    out_dir: Optional[Path] = typer.Option(None),
):
    """All five policies and the offline oracle on one trace, in the discrete-event simulator."""
    from orchestrator.bench.sim import SimBenchConfig, run_sim_bench

    trace_src, prompt_src = _sources(trace, time_column, time_unit, time_field, prompts, prompt_column)
    with _input_errors():
        run_sim_bench(SimBenchConfig(profile_path=profile_path, trace=trace_src, num_workers=workers, peak_load=peak_load,
                                     duration_s=duration_s, prompts=prompt_src, out_dir=out_dir), console)


def _parse_loads(loads: str, seeds: int) -> tuple[float, ...]:
    try:
        out = tuple(float(x) for x in loads.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"--loads must be comma-separated numbers, not {loads!r}") from None
    if not out or any(x <= 0 for x in out) or seeds < 1:
        raise typer.BadParameter("--loads must be positive numbers and --seeds at least 1")
    return out


@bench_app.command("sweep")
def bench_sweep(
    live: bool = typer.Option(False, "--live", help="Short replays through the real stack (one tritonserver) instead of the simulator."),
    profile_path: Optional[Path] = typer.Option(None, "--profile", help="Default: a measured gpu_sdxl_<gpu>.json if committed, else the cited A100 one "
                                                                       "(live: profiles/cpu_tiny.json)."),
    trace: str = typer.Option("twitter", help=TRACE_HELP),
    time_column: Optional[str] = typer.Option(None, help="CSV/TSV trace: the arrival-time column."),
    time_unit: str = typer.Option("s", help="Numeric trace times: s, ms or us."),
    time_field: Optional[str] = typer.Option(None, help="JSON Lines trace: the arrival-time field."),
    prompts: str = typer.Option("world", help=PROMPTS_HELP),
    prompt_column: Optional[str] = typer.Option(None, help="CSV/TSV column or JSON Lines field of a prompt file."),
    workers: int = typer.Option(8, help="Simulated workers (live: one)."),
    loads: str = typer.Option("0.5,1,1.5,2,2.5,3", help="Peak loads, multiples of the cluster's k0 capacity."),
    seeds: int = typer.Option(1, help="Trace/prompt seeds per point: each number is their mean, with a 95% interval."),
    duration_s: Optional[float] = typer.Option(None, help="Compress the trace to this many seconds (simulated)."),
    live_minutes: float = typer.Option(1.0, help="Live: each load's trace compressed to this many minutes."),
    out_dir: Path = typer.Option(Path("docs"), help="Where sweep_<sim|live|labels>.json/.md and the plots go."),
    quality_table: Optional[Path] = typer.Option(None, help=QT_HELP + " Runs the fast/heavy scenario of two of its models."),
    fast: str = FAST_OPT, base: str = BASE_OPT, table_layout: str = LAYOUT_OPT, table_prompt_column: str = PROMPT_COLUMN_OPT,
    model_column: str = MODEL_COLUMN_OPT, seed_column: str = SEED_COLUMN_OPT, score_column: str = SCORE_COLUMN_OPT,
    models: str = MODELS_OPT, score_kind: str = SCORE_KIND_OPT,
    fast_latency_s: Optional[float] = typer.Option(None, help="--quality-table: seconds per fast image (default: the HADIS L40S figure)."),
    base_latency_s: Optional[float] = typer.Option(None, help="--quality-table: seconds per base image (default: the HADIS L40S figure)."),
):
    """Every policy and the oracle across peak loads: plots, a table at 2x, docs/sweep_sim.json
    (with --quality-table: the fast/heavy scenario, docs/sweep_labels.json)."""
    from orchestrator.bench.sweep import SweepConfig, run_sweep
    from orchestrator.paths import CPU_PROFILE

    load_list = _parse_loads(loads, seeds)
    trace_src, prompt_src = _sources(trace, time_column, time_unit, time_field, prompts, prompt_column)
    cfg = SweepConfig(trace=trace_src, prompts=prompt_src, num_workers=workers, loads=load_list, seeds=seeds, duration_s=duration_s,
                      live=live, live_minutes=live_minutes, out_dir=out_dir)
    if quality_table is not None:
        if live:
            raise typer.BadParameter("--quality-table runs in the simulator only (its models are not served here)")
        cfg.quality_table, cfg.fast, cfg.base = quality_table, fast, base
        cfg.table_format = _table_format(table_layout, table_prompt_column, model_column, seed_column, score_column, models, score_kind)
        from orchestrator.sim.labels import LABEL_DURATION_S

        cfg.duration_s = duration_s or LABEL_DURATION_S
        cfg.model_latency_s = {m: s for m, s in ((fast, fast_latency_s), (base, base_latency_s)) if s is not None}
    if profile_path is not None or live:
        cfg.profile_path = profile_path or CPU_PROFILE
    with _input_errors():
        run_sweep(cfg, console)


@bench_app.command("weights")
def bench_weights(
    seeds: int = typer.Option(10, help="Trace/prompt seeds per load (every setting replays the same ones: paired)."),
    loads: str = typer.Option("1,2,3", help="Peak loads, multiples of the cluster's k0 capacity."),
    workers: int = typer.Option(8, help="Simulated workers."),
    policy: str = typer.Option("argus", help="Comma-separated policies to replay under each setting."),
    speed_sigma: float = typer.Option(0.15, help="Worker speed drift per minute (lognormal sigma; the live speed brackets' std)."),
    batch_sigma: float = typer.Option(0.2, help="Per-batch duration scatter (lognormal sigma; measured live at 2x)."),
    scatter: bool = typer.Option(True, help="--no-scatter: workers run at the profile's speed exactly."),
    quality_table: Optional[Path] = typer.Option(None, help=QT_HELP + " Runs its fast/heavy scenario (HADIS columns)."),
    out_dir: Path = typer.Option(Path("docs"), help="Where weights.json and weights.md go."),
):
    """Each of the router's weights turned off in turn, paired by seed against the defaults:
    docs/weights.json (which weights pay, by how much, with 95% intervals)."""
    from orchestrator.bench.weights import WeightsConfig, run_weights
    from orchestrator.policy.registry import parse_policies

    try:
        policies = parse_policies(policy)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    cfg = WeightsConfig(loads=_parse_loads(loads, seeds), seeds=seeds, num_workers=workers, policies=tuple(policies),
                        speed_sigma=speed_sigma if scatter else 0.0, batch_sigma=batch_sigma if scatter else 0.0,
                        quality_table=quality_table, out_dir=out_dir)
    with _input_errors():
        run_weights(cfg, console)


@bench_app.command("live")
def bench_live(
    trace: str = typer.Option("twitter", help=TRACE_HELP),
    time_column: Optional[str] = typer.Option(None, help="CSV/TSV trace: the arrival-time column."),
    time_unit: str = typer.Option("s", help="Numeric trace times: s, ms or us."),
    time_field: Optional[str] = typer.Option(None, help="JSON Lines trace: the arrival-time field."),
    policy: str = typer.Option("all", help="all, or a comma-separated list of argus, clipper-ha, clipper-ht, nirvana, proteus"),
    minutes: float = typer.Option(2.0, help="Compress the trace to this many minutes (each policy replays all of it)."),
    peak_load: float = typer.Option(1.5, help="Peak load as a multiple of the worker's k0 capacity."),
    prompts: str = typer.Option("world", help=PROMPTS_HELP),
    prompt_column: Optional[str] = typer.Option(None, help="CSV/TSV column or JSON Lines field of a prompt file."),
    profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"),
    out_dir: Path = typer.Option(Path("runs/live"), help="Results: records.jsonl, summary.json, plots."),
    worker: Optional[str] = typer.Option(None, help="A running tritonserver's gRPC url; default starts one."),
    reprofile: bool = typer.Option(True, help="Re-measure the profile's latencies on the run's worker first (the machine's speed drifts)."),
    speed_bracket: bool = typer.Option(True, help="Time the worker's speed before and after each policy's replay (front door and simulator follow it)."),
    warm_prompts: int = typer.Option(64, min=0, help="Prompts in every policy's cache before its replay (0: an empty cache, a cold start)."),
):
    """Replay a trace through the real stack once per policy; table, plots, and the simulator side by side."""
    from orchestrator.bench.live import LiveBenchConfig, run_live_bench
    from orchestrator.policy.registry import parse_policies

    try:
        policies = parse_policies(policy)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    trace_src, prompt_src = _sources(trace, time_column, time_unit, time_field, prompts, prompt_column)
    with _input_errors():
        run_live_bench(LiveBenchConfig(trace=trace_src, policies=policies, minutes=minutes, peak_load=peak_load, prompts=prompt_src,
                                       profile_path=profile_path, out_dir=out_dir, worker=worker, reprofile=reprofile,
                                       speed_bracket=speed_bracket, warm_prompts=warm_prompts), console)


@app.command("export-embedded")
def export_embedded(out: Path = typer.Option(Path("runs/tiny_sdxl"), help="Where to write the diffusers SD-XL-format directory.")):
    """Write the embedded tiny model as a diffusers SD-XL pipeline directory (input of build-engines)."""
    from build_engines.pipeline_dir import save_embedded

    console.print(f"wrote {save_embedded(out)}")


@app.command("build-engines")
def build_engines_cmd(
    model: Path = typer.Option(..., "--model", help="A diffusers SD-XL directory (real SD-XL, or `argus export-embedded`'s output)."),
    out: Path = typer.Option(..., "--out", help="The model repository to write (replaced if it exists)."),
    target: str = typer.Option("onnx", help="onnx | tensorrt (fp16 engines; needs tensorrt and a GPU)"),
    serve_onnx_with: str = typer.Option("auto", help="python | onnxruntime | auto (onnxruntime backend when the server has it)"),
    max_batch: int = typer.Option(4, help="Prompts per denoiser batch; UNet engines take 2x (guidance)."),
    gpus: str = typer.Option("0", help="Comma-separated GPU ids for the engines' instance groups."),
):
    """Export to ONNX (parity-checked with onnxruntime), optionally build TensorRT engines, write the repository."""
    from build_engines.build import BuildConfig, build

    report = build(BuildConfig(model_dir=model, out_repo=out, target=target, serve_onnx_with=serve_onnx_with, max_batch_size=max_batch,
                               gpus=tuple(int(g) for g in gpus.split(","))), log=console.print)
    console.print(f"wrote {report.repository} ({report.serve_kind}); load with: argus triton up --repository {out} "
                  f"--models {','.join(report.models_to_load)}")


@app.command("gpu-profile")
def gpu_profile(
    measure: bool = typer.Option(False, "--measure", help="Time SD-XL's parts on this machine's GPU and write profiles/gpu_sdxl_<gpu>.json."),
    from_measurements: Optional[list[Path]] = typer.Option(None, "--from-measurements",
                                                          help="Build the profile from timing rows (JSON Lines, e.g. ../shared/data/gpu/*.jsonl)."),
    device: str = typer.Option("cuda", help="--measure: the torch device."),
    tiny: bool = typer.Option(False, help="--measure: a toy configuration of the same shape (tests the code path on a CPU)."),
    quality_from: Path = typer.Option(Path("profiles/cpu_tiny.json"), help="Measured profile whose quality table is reused."),
    out: Optional[Path] = typer.Option(None, help="Default: profiles/gpu_sdxl_<gpu>.json (measured) or profiles/gpu_sdxl_a100.json (cited)."),
):
    """SD-XL GPU profiles: measured (--measure), built from timing rows (--from-measurements), or from cited A100 figures."""
    from orchestrator.profile.gpu_measure import run_gpu_profile

    console.print(f"wrote {run_gpu_profile(measure, from_measurements or [], device, tiny, quality_from, out, log=console.print)}")


@bench_app.command("orchestrator")
def bench_orchestrator(profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"), requests: int = typer.Option(5000)):
    """Per-request decision overhead (p50/p99) and the planner's solve time at 8 and 64 workers."""
    from orchestrator.bench.orchestrator import run_orchestrator_bench

    run_orchestrator_bench(profile_path, requests, console)


@bench_app.command("frontdoor")
def bench_frontdoor(requests: int = typer.Option(48, help="Requests per phase (k0, k25, fast)."),
                    concurrency: int = typer.Option(4, help="Concurrent clients, each in a closed loop."),
                    as_json: bool = typer.Option(False, "--json", help="Print only the JSON object.")):
    """The front door's own latency under concurrent load: overhead (latency minus its generation call) p50/p99,
    the k25 generation p50 of the same run, and Triton calls per request by variant."""
    from orchestrator.bench.frontdoor import FrontdoorBenchConfig, run_frontdoor_bench

    _emit(run_frontdoor_bench(FrontdoorBenchConfig(requests_per_phase=requests, concurrency=concurrency),
                              log=(lambda *a: None) if as_json else console.print), as_json)


@bench_app.command("overload")
def bench_overload(factor: float = typer.Option(5.0, help="Arrival rate as a multiple of the k0 throughput at the SLO."),
                   duration_s: float = typer.Option(60.0, help="Length of the burst."),
                   policy: str = typer.Option("argus"),
                   as_json: bool = typer.Option(False, "--json", help="Print only the JSON object.")):
    """A burst far above capacity through a real front door: how many served requests met the SLO (the figure the
    reliability test prints but never asserts), with what was refused and the peak in flight."""
    from orchestrator.bench.overload import OverloadBenchConfig, run_overload_bench

    if factor <= 0 or duration_s <= 0:
        raise typer.BadParameter("--factor and --duration-s must be > 0")
    _emit(run_overload_bench(OverloadBenchConfig(factor=factor, duration_s=duration_s, policy=policy),
                             log=(lambda *a: None) if as_json else console.print), as_json)


def _emit(result: dict, as_json: bool) -> None:
    """One JSON object: bare on stdout with --json (for machines), pretty otherwise."""
    print(json.dumps(result)) if as_json else console.print_json(json.dumps(result))


@bench_app.command("engines")
def bench_engines(requests: int = typer.Option(16), concurrency: int = typer.Option(4)):
    """torch vs onnxruntime on CPU: each exported part in-process, and t2i_k0 through Triton."""
    from orchestrator.bench.engines import EnginesBenchConfig, run_engines_bench

    run_engines_bench(EnginesBenchConfig(requests=requests, concurrency=concurrency), console)


@bench_app.command("cache")
def bench_cache(sizes: str = typer.Option("10000,100000", help="Cache sizes (entries) to measure."), queries: int = typer.Option(400)):
    """Retrieval p50/p99 and throughput at 10k/100k entries, memory per entry, vs one t2i_k25 generation."""
    from orchestrator.bench.cache import CacheBenchConfig, run_cache_bench

    run_cache_bench(CacheBenchConfig(sizes=_levels(sizes), queries=queries), console)


if __name__ == "__main__":
    app()
