"""build_engines: diffusers SD-XL directory -> ONNX (parity) -> a repository a real tritonserver
serves with the same images as the torch path; TensorRT where a GPU is; the docker files lint."""

from __future__ import annotations

from orchestrator.paths import PROJECT_ROOT

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from build_engines import tensorrt as trt_build
from build_engines.build import BuildConfig, build
from build_engines.export import check_parity, export_onnx, graph_specs
from build_engines.pipeline_dir import load, save_embedded
from orchestrator.triton.client import generate
from orchestrator.triton.server import TritonServer
from tests.conftest import triton_config

ROOT = PROJECT_ROOT
DOCKER = ROOT / "docker"
PROMPTS = ["a large red circle on the left", "two small blue squares on a yellow background"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_embedded(tmp_path_factory.mktemp("tiny_sdxl"))


@pytest.fixture(scope="module")
def built(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "repo"
    return build(BuildConfig(model_dir=tiny_dir, out_repo=out, target="onnx", serve_onnx_with="python"), log=lambda *_: None)


def test_embedded_model_round_trips_the_diffusers_layout(tiny_dir):
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for sub in ("unet", "vae", "text_encoder_2", "tokenizer_2", "scheduler"):
        assert (tiny_dir / sub).is_dir(), sub
    parts = load(tiny_dir)
    assert [t.name for t in parts.towers] == ["text_encoder_2"] and parts.towers[0].pooled
    assert parts.latent_shape == (4, 8, 8) and parts.image_size == 32 and parts.token_len == 32
    assert set(parts.extra_unets) == {"unet_fast"}


def test_every_part_exports_with_a_dynamic_batch_and_matches_torch(tiny_dir, tmp_path):
    specs = graph_specs(load(tiny_dir))
    assert {s.name for s in specs} == {"text_encoder_2", "unet", "unet_fast", "vae_decoder"}
    for spec in specs:
        checks = check_parity(spec, export_onnx(spec, tmp_path / spec.name / "model.onnx"), batches=(1, 3))
        assert all(c.ok for c in checks), checks
        assert [c.batch for c in checks] == [1, 3]
    unet = next(s for s in specs if s.name == "unet")
    assert list(unet.inputs) == ["SAMPLE", "TIMESTEP", "ENCODER_HIDDEN_STATES", "TEXT_EMBEDS", "TIME_IDS"]


def test_parity_check_catches_a_wrong_graph(tiny_dir, tmp_path):
    """The check is not vacuous: a graph exported from other weights fails it."""
    import torch

    spec = next(s for s in graph_specs(load(tiny_dir)) if s.name == "unet_fast")
    path = export_onnx(spec, tmp_path / "model.onnx")
    with torch.no_grad():
        for p in spec.module.parameters():
            p.add_(0.05)
    assert not all(c.ok for c in check_parity(spec, path))


def test_build_report_and_repository_layout(built):
    repo = Path(built.repository)
    assert built.serve_kind == "python" and all(p.ok for p in built.parity)
    assert "text_encoder_2_engine" in built.models_to_load and "t2i_k0" in built.models_to_load
    for model in ("unet", "unet_fast", "vae_decoder", "text_encoder_2_engine"):
        assert (repo / model / "1" / "model.onnx").exists() and (repo / model / "1" / "model.py").exists()
    assert (repo / "denoiser_k0" / "1" / "uncond.npz").exists()
    cfg = (repo / "denoiser_k0" / "config.pbtxt").read_text()
    assert 'key: "LATENT_SHAPE" value: { string_value: "4,8,8" }' in cfg


def test_native_configs_for_the_gpu_image(tiny_dir, tmp_path):
    """target onnx served by Triton's onnxruntime backend (the GPU image has it): native platform,
    GPU instance groups, the UNet's batch doubled for guidance."""
    rep = build(BuildConfig(model_dir=tiny_dir, out_repo=tmp_path / "ort", target="onnx", serve_onnx_with="onnxruntime", gpus=(0, 1)),
                log=lambda *_: None)
    cfg = (Path(rep.repository) / "unet" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in cfg and "KIND_GPU" in cfg and "gpus: [ 0, 1 ]" in cfg
    assert "max_batch_size: 8" in cfg  # 2 x 4 prompts: classifier-free guidance doubles the UNet batch
    assert not (Path(rep.repository) / "unet" / "1" / "model.py").exists()


@pytest.mark.triton
def test_built_and_default_repositories_serve_the_torch_images(built, client):
    """The built ONNX repository in a real tritonserver (onnxruntime inside the Python backend) and
    the project's default repository (runtime onnxruntime) against the torch pipeline in-process,
    same prompts and seeds: k0 and a K=10 resume."""
    import torch

    from tiny_model.models import load_components
    from tiny_model.pipeline import TinyPipeline

    torch.set_num_threads(1)
    pipe = TinyPipeline(load_components())
    latent = np.random.RandomState(1).randn(2, 4, 8, 8).astype(np.float32)
    ref = pipe.generate(PROMPTS, [3, 4])
    ref10 = pipe.generate(PROMPTS, [3, 4], k=10, start_latents=torch.from_numpy(latent))
    default = (generate(client, PROMPTS, [3, 4], "k0"), generate(client, PROMPTS, [3, 4], "k10", latent))
    repo = Path(built.repository)
    models = tuple(m for m in built.models_to_load if m in ("unet", "text_encoder_2_engine", "t2i_k0", "t2i_k10"))
    with TritonServer(triton_config(models, model_repository=repo)) as server:
        import tritonclient.grpc as grpcclient

        c = grpcclient.InferenceServerClient(server.config.grpc_url)
        got = (generate(c, PROMPTS, [3, 4], "k0"), generate(c, PROMPTS, [3, 4], "k10", latent))
    for served in (default, got):
        for a, b in zip(served, (ref, ref10)):
            assert a.shape == b.shape == (2, 32, 32, 3) and a.dtype == np.uint8
            diff = np.abs(a.astype(int) - b.astype(int))
            assert diff.mean() <= 1.0 and diff.max() <= 24, (diff.mean(), diff.max())
    assert not np.array_equal(got[0][0], got[0][1])


def test_default_repository_runs_the_exported_graphs():
    from build_engines.embedded import ensure_onnx
    from orchestrator.triton.repository import ONNX_MODELS, PROJECT_REPOSITORY, RepositoryConfig, render_repository

    files = render_repository(RepositoryConfig())
    for model in ONNX_MODELS:
        assert 'key: "RUNTIME" value: { string_value: "onnxruntime" }' in files[f"{model}/config.pbtxt"]
        assert (PROJECT_REPOSITORY / model / "1" / "model.onnx").exists()
    assert ensure_onnx(PROJECT_REPOSITORY, list(ONNX_MODELS)) == []  # current: nothing re-exported
    assert 'string_value: "torch"' in render_repository(RepositoryConfig(runtime="torch"))["unet/config.pbtxt"]


def test_tensorrt_engine_builds_where_a_gpu_is(tiny_dir, tmp_path):
    reason = trt_build.unavailable()
    if reason:
        pytest.skip(f"TensorRT: {reason}")
    import tensorrt as trt

    spec = next(s for s in graph_specs(load(tiny_dir)) if s.name == "unet")
    plan = trt_build.build_engine(export_onnx(spec, tmp_path / "unet.onnx"), tmp_path / "model.plan", max_batch=8)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    assert engine is not None and engine.num_io_tensors == 6


def test_gpu_extra_is_opt_in():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu = " ".join(project["optional-dependencies"]["gpu"])
    for pkg in ("tensorrt", "faiss-gpu", "onnxruntime-gpu"):
        assert pkg in gpu
    assert not any(d.startswith(("tensorrt", "faiss-gpu", "onnxruntime-gpu")) for d in project["dependencies"])


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    res = subprocess.run([exe, str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    text = (DOCKER / "Dockerfile").read_text()
    assert "FROM nvcr.io/nvidia/tritonserver:24.10-py3" in text  # 24.10 = tritonserver 2.51.0, the wheel's version


def test_compose_services_metrics_and_dashboard():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"triton", "orchestrator", "prometheus", "grafana", "build-engines"} <= set(services)
    for name in ("triton", "orchestrator", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "--workers=triton:8001" in services["orchestrator"]["command"]
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"]}
    assert targets == {"argus-orchestrator": ["orchestrator:18502"], "triton": ["triton:8002"]}
    # Every orchestrator metric the dashboard plots exists in the orchestrator's registry.
    from orchestrator.serve.metrics import Metrics

    known = {m.name for m in Metrics().registry.collect()}
    dash = json.loads((DOCKER / "grafana" / "dashboards" / "argus.json").read_text())
    import re

    used = {n for p in dash["panels"] for t in p["targets"] for n in re.findall(r"\b(argus_[a-z_]+)", t["expr"])}
    assert used, "dashboard plots no orchestrator metric"
    base = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in used}
    assert base <= known | {re.sub(r"_total$", "", k) for k in known}, base - known
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        env = {"SDXL_DIR": "/tmp", "ARGUS_AUTH_TOKEN": "t", "GRAFANA_ADMIN_PASSWORD": "p", "PATH": "/usr/bin:/bin:/usr/local/bin"}
        res = subprocess.run(["docker", "compose", "-f", str(DOCKER / "compose.yaml"), "config", "-q"], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
