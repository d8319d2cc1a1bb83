"""``argus``: the command line of the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

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
    from orchestrator.triton import server
    from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, write_repository

    cfg = RepositoryConfig()
    if repository is None:
        write_repository(cfg, PROJECT_REPOSITORY)
        default = models_to_load(cfg)
    else:
        listed = repository / "models_to_load.txt"
        default = listed.read_text().split() if listed.exists() else []
    load = tuple(m for m in models.split(",") if m) or tuple(default)
    info = server.up(server.TritonConfig(model_repository=repository or PROJECT_REPOSITORY, grpc_port=grpc_port, http_port=grpc_port - 1,
                                         metrics_port=grpc_port + 1, load_models=load))
    console.print_json(json.dumps(info))


@triton_app.command("down")
def triton_down(grpc_port: int = typer.Option(18101)):
    """Stop the background tritonserver (SIGTERM, then SIGKILL)."""
    from orchestrator.triton import server

    console.print("stopped" if server.down(grpc_port) else "not running")


@triton_app.command("status")
def triton_status(grpc_port: int = typer.Option(18101)):
    """Whether the background server runs, and which models are ready."""
    from orchestrator.triton import server

    st = server.status(grpc_port)
    if st.get("running"):
        import tritonclient.grpc as grpcclient

        try:
            index = grpcclient.InferenceServerClient(st["grpc"]).get_model_repository_index(as_json=True).get("models", [])
            st["ready_models"] = sorted(m["name"] for m in index if m.get("state") == "READY")
        except Exception as e:  # noqa: BLE001 - status reports, it does not fail
            st["error"] = str(e)
    console.print_json(json.dumps(st))


@repo_app.command("write")
def repo_write(
    out: Path = typer.Option(None, help="Output directory (default: the project's model_repository/)."),
    levels: str = typer.Option("0,5,10,15,20,25", help="Step-skip levels K, one variant each."),
    steps: int = typer.Option(50, help="Full schedule length of the base model."),
):
    """Write every config.pbtxt (and per-variant denoiser shims) for a set of step-skip levels."""
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
    import tritonclient.grpc as grpcclient
    from PIL import Image

    from orchestrator.triton.client import generate_with_levels
    from orchestrator.triton.repository import RepositoryConfig

    client = grpcclient.InferenceServerClient(url)
    if fast:
        images, _ = generate_with_levels(client, [prompt], [seed], "fast", levels=False)
    elif k == 0:
        images, _ = generate_with_levels(client, [prompt], [seed], "k0", levels=False)
    else:
        levels = sorted(RepositoryConfig().step_skip_levels)
        if k not in levels:
            raise typer.BadParameter(f"--k must be one of {levels}")
        _, lv = generate_with_levels(client, [source or prompt], [seed], "k0")
        images, _ = generate_with_levels(client, [prompt], [seed], f"k{k}", latents=lv[:, levels.index(k)], levels=False)
    img = Image.fromarray(images[0])
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(output)
    console.print(f"wrote {output}")


def perf_analyzer_env() -> dict[str, str]:
    """perf_analyzer 2.51 needs libb64 and libcudart: link them from pytriton's bundled libs."""
    from orchestrator.triton.server import STATE_DIR, pytriton_dirs

    _, libs = pytriton_dirs()
    out = STATE_DIR / "palibs"
    out.mkdir(parents=True, exist_ok=True)
    for pattern, name in (("libcudart-*.so.12*", "libcudart.so.12"), ("libb64-*.so.0d", "libb64.so.0d")):
        target = next(libs.glob(pattern))
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(out), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def perf_analyzer_command(model: str, url: str, concurrency: str, interval_ms: int, csv: Path | None, batch: int, stability_pct: int = 50) -> list[str]:
    """perf_analyzer over gRPC with real prompt data (a string input needs explicit data)."""
    from orchestrator.triton.server import STATE_DIR

    data = STATE_DIR / f"perf_data_{model}.json"
    row = {"PROMPT": {"content": ["a large red circle on the left and a small blue square on the right"], "shape": [1]}, "SEED": {"content": [7], "shape": [1]}}
    if model.startswith("t2i_k") and model != "t2i_k0":
        row["LATENT"] = {"content": [0.0] * 256, "shape": [4, 8, 8]}
    data.write_text(json.dumps({"data": [row]}))
    pa = Path(sys.executable).parent / "perf_analyzer"
    cmd = [str(pa), "-m", model, "-u", url, "-i", "grpc", "--concurrency-range", concurrency, "--measurement-interval", str(interval_ms),
           "--input-data", str(data), "-b", str(batch), "--stability-percentage", str(stability_pct), "--max-trials", "4"]
    return cmd + (["-f", str(csv)] if csv else [])


@app.command()
def perf(
    model: str = typer.Option("t2i_k0", help="Model to load-test (a t2i_* ensemble)."),
    url: str = typer.Option("127.0.0.1:18101"),
    concurrency: str = typer.Option("1:2", help="perf_analyzer --concurrency-range."),
    interval_ms: int = typer.Option(4000),
    batch: int = typer.Option(1),
    csv: Optional[Path] = typer.Option(None, help="Write perf_analyzer's CSV here."),
    stability_pct: int = typer.Option(50, help="Allowed variation between windows (raise it on a busy machine)."),
):
    """Run perf_analyzer (from tritonclient 2.51) against a running server over gRPC."""
    cmd = perf_analyzer_command(model, url, concurrency, interval_ms, csv, batch, stability_pct)
    raise typer.Exit(subprocess.call(cmd, env=perf_analyzer_env()))


@app.command("train-embedded")
def train_embedded(
    smoke: bool = typer.Option(False, help="A few steps of every phase (for CI); writes to --out."),
    out: Optional[Path] = typer.Option(None, help="Weights directory (default: tiny_model/weights)."),
    seed: int = typer.Option(0),
):
    """Reproduce the embedded model's weights from a seed."""
    from tiny_model.train import TrainConfig, train_embedded as run

    if smoke:
        cfg = TrainConfig.smoke(out or Path("runs/smoke_weights"))
    else:
        cfg = TrainConfig(seed=seed)
        if out:
            cfg.out_dir = out
    cfg.seed = seed
    meta = run(cfg)
    console.print_json(json.dumps(meta["wall_s"]))


@app.command("eval-embedded")
def eval_embedded(out_dir: Path = typer.Option(Path("docs"), help="Where embedded_eval.json, embedded_grid.png and embedded_model.md go.")):
    """Measure the embedded model: full quality, approximation cost by prompt, thresholds, latency."""
    from tiny_model.evaluate import EvalConfig, render_markdown, run_eval
    from tiny_model.models import WEIGHTS_DIR

    results = run_eval(EvalConfig(out_dir=out_dir))
    meta = json.loads((WEIGHTS_DIR / "meta.json").read_text())
    head = (out_dir / "embedded_model.head.md").read_text() if (out_dir / "embedded_model.head.md").exists() else ""
    (out_dir / "embedded_model.md").write_text(head + render_markdown(results, meta))
    console.print(f"wrote {out_dir}/embedded_model.md ({results['wall_s']:.0f} s)")


@app.command("eval-predictor")
def eval_predictor(profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"), splits: int = typer.Option(5)):
    """Held-out error of the quality predictor vs predicting each variant's mean, and oracle-pick agreement."""
    import numpy as np

    from orchestrator.predictor import evaluate_predictor
    from orchestrator.profile import Profile

    prof = Profile.load(profile_path)
    runs = [evaluate_predictor(prof, seed=s) for s in range(splits)]
    ratio = np.mean([np.mean([r["mae"][v] / r["mae_of_mean_baseline"][v] for v in r["mae"]]) for r in runs])
    console.print(f"{splits} random 75/25 splits of {len(prof.quality.prompts)} prompts: held-out MAE / MAE of the mean = {ratio:.3f}; "
                  f"oracle-pick agreement {np.mean([r['oracle_agreement'] for r in runs]):.1%}; "
                  f"mean quality regret {np.mean([r['mean_quality_regret'] for r in runs]):.3f}")


@app.command()
def demo(out_dir: Path = typer.Option(Path("runs/demo")), grpc_port: int = typer.Option(18201)):
    """The main job: start Triton, serve a short workload at every variant, score it, write a report."""
    from orchestrator.demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(out_dir=out_dir, grpc_port=grpc_port), console=console)
    table = Table(title=f"{len(report['rows_of_grid'])} prompts through Triton (trained weights: {report['trained_weights']})")
    for col in ("variant", "UNet steps", "latency/image (ms)", "CLIP score", "ground-truth acc"):
        table.add_column(col, justify="right")
    for row in report["summary"]:
        gt = "-" if row["gt_accuracy"] is None else f"{row['gt_accuracy']:.2f}"
        table.add_row(row["variant"], str(row["unet_steps"]), f"{row['latency_per_image_ms']:.0f}", f"{row['clip_score']:.1f}", gt)
    console.print(table)
    orch = report.get("orchestrator")
    if orch:
        console.print(f"orchestrator (argus policy, {orch['offered_rps']:.1f} req/s open loop): served {orch['served']}/{orch['requests']}, "
                      f"variant mix {orch['variant_mix']}, SLO violations {orch['slo_violations']:.0f}")
    console.print(f"images: {out_dir}/grid.png (rows: prompts, columns: {', '.join(report['columns_of_grid'])}); report: {out_dir}/report.json")


@cache_app.command("warm")
def cache_warm(
    prompts: Path = typer.Option(..., help="Text file, one prompt per line (empty lines skipped)."),
    url: str = typer.Option("127.0.0.1:18101"),
    limit: int = typer.Option(0, help="Use only the first N prompts (0: all)."),
    tenant: Optional[str] = typer.Option(None, help="Fill this tenant's partition instead of the shared one."),
):
    """Fill the cache from a prompt list: generate each at K=0 and insert its intermediate latents."""
    import tritonclient.grpc as grpcclient
    from rich.progress import Progress

    from orchestrator.cache import client as cache_client

    lines = [ln.strip() for ln in prompts.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    from orchestrator.validation import MAX_PROMPT_BYTES

    lines = [ln for ln in lines if len(ln.encode()) <= MAX_PROMPT_BYTES][: limit or None]
    client = grpcclient.InferenceServerClient(url)
    with Progress(console=console) as bar:
        task = bar.add_task("warming cache", total=len(lines))
        added = cache_client.warm(client, lines, tenant=tenant, progress=lambda n: bar.advance(task, n))
    console.print(f"inserted {added} generations")


@cache_app.command("stats")
def cache_stats(url: str = typer.Option("127.0.0.1:18102", help="Triton's metrics address (host:port).")):
    """The cache's custom metrics (hit rate by K, entries, bytes, evictions) from Triton's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://{url}/metrics", timeout=5) as r:
        lines = [ln for ln in r.read().decode().splitlines() if ln.startswith("argus_cache")]
    console.print("\n".join(lines) or "no cache metrics (is cache_retrieval loaded?)")


def _measure_fast_load_s(client) -> float:
    """Time to bring the fast model up on a worker (unload, then load unet_fast and t2i_fast)."""
    import time

    client.unload_model("t2i_fast", unload_dependents=True)
    client.unload_model("unet_fast")
    deadline = time.time() + 60
    while (client.is_model_ready("unet_fast") or client.is_model_ready("denoiser_fast")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # unloads finish in the background (the recipe's section 5)
    t = time.perf_counter()
    client.load_model("unet_fast")
    client.load_model("t2i_fast")
    return time.perf_counter() - t


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
    import tritonclient.grpc as grpcclient

    from orchestrator.profile import Profile
    from orchestrator.profiling import build_profile, measure_quality
    from orchestrator.triton.repository import RepositoryConfig

    client = grpcclient.InferenceServerClient(url)
    quality = Profile.load(out).quality if latency_only else measure_quality(prompts, pool)
    load_s = _measure_fast_load_s(client)
    prof = build_profile(client, RepositoryConfig(), quality, load_s, _levels(batches), repeats)
    out.parent.mkdir(parents=True, exist_ok=True)
    prof.save(out)
    table = Table(title=f"profile -> {out}")
    for col in ("variant", *[f"b={b} ms" for b in _levels(batches)], "mean rel. quality"):
        table.add_column(col, justify="right")
    for v, vp in prof.variants.items():
        q = 1.0 if v == "k0" else float(quality.relative_quality[v].mean())
        table.add_row(v, *[f"{vp.latency_ms[b]:.0f}" for b in _levels(batches)], f"{q:.3f}")
    console.print(table)
    console.print(f"fast model load time: {load_s:.1f} s")


@app.command()
def serve(
    policy: str = typer.Option("argus", help="argus | clipper-ha | clipper-ht | nirvana | proteus"),
    workers: str = typer.Option("", help="Comma-separated Triton gRPC endpoints; empty: start --local-workers servers here."),
    local_workers: int = typer.Option(1),
    local_base_port: int = typer.Option(18600, help="Local worker i uses HTTP/gRPC/metrics ports base+10i .. base+10i+2."),
    variants: str = typer.Option("", help="Comma-separated variants local workers load (default: all)."),
    profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"),
    port: int = typer.Option(18500),
    metrics_port: int = typer.Option(18502),
    address: str = typer.Option("127.0.0.1", help="Bind address of the front door and its metrics (loopback unless told otherwise)."),
    slo_ms: float = typer.Option(5000.0, help="Default SLO for requests that send none."),
    auth_token: Optional[str] = typer.Option(None, envvar="ARGUS_AUTH_TOKEN", help="Require 'authorization: Bearer <token>'."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without a token (deliberately; default generates one)."),
    tenants: str = typer.Option("", help="Comma-separated known tenants; others get INVALID_ARGUMENT (default: any)."),
    max_queue: int = typer.Option(64, help="Admitted requests in flight at most; beyond it RESOURCE_EXHAUSTED."),
    drain_timeout_s: float = typer.Option(30.0, help="On SIGTERM, how long in-flight requests may take."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where local workers persist the approximate cache."),
    log_level: str = typer.Option("INFO", help="DEBUG logs full prompts; other levels never do."),
):
    """Run the front door (KServe v2 gRPC, model 't2i') in front of a cluster of Triton workers.

    SIGTERM/SIGINT drain: no new admissions, in-flight requests finish (up to --drain-timeout-s),
    local tritonservers stop (their cache is persisted), exit 0."""
    import logging
    import secrets
    import signal
    import sys
    import threading

    from orchestrator.frontdoor import FrontDoorConfig, serve as serve_frontdoor
    from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, write_repository
    from orchestrator.triton.server import TritonConfig, TritonServer

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if auth_token is None and not no_auth:
        auth_token = secrets.token_urlsafe(24)
        print(f"generated bearer token (pass --auth-token/ARGUS_AUTH_TOKEN to choose one, --no-auth to disable): {auth_token}",
              file=sys.stderr, flush=True)
    servers = {}
    endpoints = [w for w in workers.split(",") if w]
    if not endpoints:
        repo = RepositoryConfig()
        write_repository(repo, PROJECT_REPOSITORY)
        load = tuple(models_to_load(repo, [v for v in variants.split(",") if v] or None))
        for i in range(local_workers):
            base = local_base_port + 10 * i
            tcfg = TritonConfig(http_port=base, grpc_port=base + 1, metrics_port=base + 2, load_models=load,
                                cache_dir=None if cache_dir is None else cache_dir / f"worker{i}")
            server = TritonServer(tcfg).start()
            servers[server.config.grpc_url] = server
            endpoints.append(server.config.grpc_url)
    cfg = FrontDoorConfig(workers=endpoints, profile_path=profile_path, policy=policy, address=address, port=port, metrics_port=metrics_port,
                          default_slo_ms=slo_ms, auth_token=auth_token, allow_unauthenticated=no_auth and auth_token is None,
                          tenants=frozenset(t for t in tenants.split(",") if t) or None, max_queue=max_queue, drain_timeout_s=drain_timeout_s)
    server, engine = serve_frontdoor(cfg, servers=servers)
    console.print(f"front door on {address}:{port} (policy {policy}, workers {endpoints}); metrics on :{metrics_port}")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    done.wait()
    drained = engine.drain(drain_timeout_s)
    server.stop(grace=1).wait()  # drain already waited for in-flight requests
    engine.close()
    for s in servers.values():
        s.stop()
    console.print(f"stopped ({'drained' if drained else 'drain deadline passed'}; {len(servers)} local tritonserver(s) stopped)")


@bench_app.command("serving")
def bench_serving(
    requests: int = typer.Option(24, help="Requests per variant and mode."),
    concurrency: int = typer.Option(4),
    grpc_port: int = typer.Option(18301),
):
    """Images/s and p50/p99 latency of t2i_k0 vs t2i_k25 through Triton, and Triton vs in-process."""
    from orchestrator.bench_serving import ServingBenchConfig, run_serving_bench

    run_serving_bench(ServingBenchConfig(requests=requests, concurrency=concurrency, grpc_port=grpc_port), console)


@bench_app.command("sim")
def bench_sim(
    profile_path: Path = typer.Option(Path("profiles/gpu_sdxl_a100.json"), "--profile"),
    trace: str = typer.Option("twitter", help="twitter | azure-code | azure-conv | servegen-mm | maf | a CSV path"),
    workers: int = typer.Option(8),
    peak_load: float = typer.Option(1.5, help="Peak load as a multiple of the cluster's k0 capacity."),
    duration_s: Optional[float] = typer.Option(None, help="Compress the trace to this many seconds."),
    prompts: str = typer.Option("world", help="world (heavy reuse) | diffusiondb | parti | drawbench"),
    out_dir: Optional[Path] = typer.Option(None),
):
    """All five policies and the offline oracle on one trace, in the discrete-event simulator."""
    from orchestrator.bench_sim import SimBenchConfig, run_sim_bench

    run_sim_bench(SimBenchConfig(profile_path=profile_path, trace=trace, num_workers=workers, peak_load=peak_load, duration_s=duration_s,
                                 prompts=prompts, out_dir=out_dir), console)


@bench_app.command("live")
def bench_live(
    trace: str = typer.Option("twitter", help="twitter | azure-code | azure-conv | servegen-mm | maf | a CSV path"),
    policy: str = typer.Option("all", help="all, or a comma-separated list of argus, clipper-ha, clipper-ht, nirvana, proteus"),
    minutes: float = typer.Option(2.0, help="Compress the trace to this many minutes (each policy replays all of it)."),
    peak_load: float = typer.Option(1.5, help="Peak load as a multiple of the worker's k0 capacity."),
    prompts: str = typer.Option("world", help="world (heavy reuse) | diffusiondb | parti | drawbench"),
    profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"),
    out_dir: Path = typer.Option(Path("runs/live"), help="Results: records.jsonl, summary.json, plots."),
    worker: Optional[str] = typer.Option(None, help="A running tritonserver's gRPC url; default starts one."),
):
    """Replay a trace through the real stack once per policy; table, plots, and the simulator side by side."""
    from orchestrator.bench_live import LiveBenchConfig, run_live_bench
    from orchestrator.bench_sim import POLICY_NAMES

    policies = POLICY_NAMES if policy == "all" else tuple(p.strip() for p in policy.split(","))
    unknown = set(policies) - set(POLICY_NAMES)
    if unknown:
        raise typer.BadParameter(f"unknown policies {sorted(unknown)}; choose from {', '.join(POLICY_NAMES)}")
    run_live_bench(LiveBenchConfig(trace=trace, policies=policies, minutes=minutes, peak_load=peak_load, prompts=prompts,
                                   profile_path=profile_path, out_dir=out_dir, worker=worker), console)


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
    quality_from: Path = typer.Option(Path("profiles/cpu_tiny.json"), help="Measured profile whose quality table is reused."),
    out: Path = typer.Option(Path("profiles/gpu_sdxl_a100.json")),
):
    """Write the SD-XL-on-A100 profile from cited public figures (see orchestrator/gpu_profile.py)."""
    from orchestrator.gpu_profile import sdxl_a100_profile
    from orchestrator.profile import Profile

    sdxl_a100_profile(Profile.load(quality_from)).save(out)
    console.print(f"wrote {out}")


@bench_app.command("orchestrator")
def bench_orchestrator(profile_path: Path = typer.Option(Path("profiles/cpu_tiny.json"), "--profile"), requests: int = typer.Option(5000)):
    """Per-request decision overhead (p50/p99) and the planner's solve time at 8 and 64 workers."""
    from orchestrator.bench_orchestrator import run_orchestrator_bench

    run_orchestrator_bench(profile_path, requests, console)


@bench_app.command("engines")
def bench_engines(requests: int = typer.Option(16), concurrency: int = typer.Option(4)):
    """torch vs onnxruntime on CPU: each exported part in-process, and t2i_k0 through Triton."""
    from orchestrator.bench_engines import EnginesBenchConfig, run_engines_bench

    run_engines_bench(EnginesBenchConfig(requests=requests, concurrency=concurrency), console)


@bench_app.command("cache")
def bench_cache(sizes: str = typer.Option("10000,100000", help="Cache sizes (entries) to measure."), queries: int = typer.Option(400)):
    """Retrieval p50/p99 and throughput at 10k/100k entries, memory per entry, vs one t2i_k25 generation."""
    from orchestrator.bench_cache import CacheBenchConfig, run_cache_bench

    run_cache_bench(CacheBenchConfig(sizes=_levels(sizes), queries=queries), console)


if __name__ == "__main__":
    app()
