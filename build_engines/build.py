"""``argus build-engines``: a diffusers SD-XL directory -> ONNX (-> TensorRT) -> a Triton repository.

The written repository has the same model names and tensors as the project's own, so the same
orchestrator and ensembles drive it:

    text_encoder          Python: tokenizes, calls the text encoder engine(s) through BLS
    text_encoder*_engine  exported text tower(s)
    unet, unet_fast       exported UNets (one denoising step)
    vae_decoder           exported decoder (uint8 NHWC image out)
    denoiser*, cache_retrieval, t2i_*   the project's Python BLS models and ensembles

Each exported part is served as ``tensorrt_plan`` (target tensorrt), ``onnxruntime_onnx`` (target
onnx on a server with the onnxruntime backend: the NVIDIA Triton image), or the Python backend
running onnxruntime (target onnx on the pip wheel's CPU server, which has only the Python backend).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from build_engines.export import GraphSpec, Parity, check_parity, export_onnx, graph_specs
from build_engines.pipeline_dir import PipelineParts, load
from orchestrator.triton.repository import (PROJECT_REPOSITORY, ModelDims, RepositoryConfig, _io, _params, _tensor, denoiser_name, models_to_load,
                                            render_repository)

MODELS_DIR = Path(__file__).resolve().parent / "models"
SERVE_KINDS = ("tensorrt_plan", "onnxruntime_onnx", "python")


@dataclasses.dataclass
class BuildConfig:
    model_dir: Path
    out_repo: Path
    target: str = "onnx"
    """'onnx' or 'tensorrt' (fp16 engines; needs tensorrt and a GPU, else the build says why and stops)."""
    serve_onnx_with: str = "auto"
    """'python' (onnxruntime inside the Python backend), 'onnxruntime' (Triton's onnxruntime backend),
    or 'auto': the onnxruntime backend when the local server has it, else python."""
    max_batch_size: int = 4
    """Prompts per denoiser batch; UNet engines take 2x that (classifier-free guidance)."""
    step_skip_levels: tuple[int, ...] = (0, 5, 10, 15, 20, 25)
    num_inference_steps: int = 50
    gpus: tuple[int, ...] = (0,)
    """GPUs each engine gets an instance on (instance_group per GPU)."""
    instances_per_gpu: int = 1
    work_dir: Path | None = None
    """Where ONNX files are written before they are copied in (default: out_repo/../onnx)."""


@dataclasses.dataclass
class BuildReport:
    target: str
    serve_kind: str
    parity: list[Parity]
    tensorrt_skipped: str | None
    models_to_load: list[str]
    export_s: dict[str, float]
    repository: str

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "parity": [dataclasses.asdict(p) for p in self.parity]}


def serve_kind(cfg: BuildConfig) -> str:
    if cfg.target == "tensorrt":
        return "tensorrt_plan"
    if cfg.serve_onnx_with == "auto":
        from orchestrator.triton.server import backend_dir

        return "onnxruntime_onnx" if (backend_dir() / "onnxruntime").exists() else "python"
    return {"python": "python", "onnxruntime": "onnxruntime_onnx"}[cfg.serve_onnx_with]


def engine_config(name: str, kind: str, spec: GraphSpec, max_batch: int, dtypes: dict[str, str], cfg: BuildConfig) -> str:
    """config.pbtxt of one exported part, with its tensors' per-item dims from the example inputs."""
    ins = [_tensor(n, dtypes[n], a.shape[1:]) for n, a in spec.inputs.items()]
    outs = [_tensor(n, dtypes[n], dims) for n, dims in _output_dims(spec).items()]
    head = f'name: "{name}"\n' + ('backend: "python"\n' if kind == "python" else f'platform: "{kind}"\n') + f"max_batch_size: {max_batch}\n"
    if kind == "python":
        group = "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
    else:
        group = f"instance_group [ {{ kind: KIND_GPU count: {cfg.instances_per_gpu} gpus: [ {', '.join(map(str, cfg.gpus))} ] }} ]\n"
    return head + _io("input", ins) + _io("output", outs) + group + "dynamic_batching { max_queue_delay_microseconds: 0 }\n"


def _output_dims(spec: GraphSpec) -> dict[str, tuple[int, ...]]:
    with torch.inference_mode():
        out = spec.module(*(torch.from_numpy(a[:1]) for a in spec.inputs.values()))
    out = out if isinstance(out, tuple) else (out,)
    return {n: tuple(o.shape[1:]) for n, o in zip(spec.outputs, out)}


TRITON_DTYPE = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.int64): "TYPE_INT64", np.dtype(np.uint8): "TYPE_UINT8"}


def _dtypes(spec: GraphSpec) -> dict[str, str]:
    with torch.inference_mode():
        out = spec.module(*(torch.from_numpy(a[:1]) for a in spec.inputs.values()))
    out = out if isinstance(out, tuple) else (out,)
    d = {n: TRITON_DTYPE[a.dtype] for n, a in spec.inputs.items()}
    d.update({n: TRITON_DTYPE[np.dtype(o.numpy().dtype)] for n, o in zip(spec.outputs, out)})
    return d


@torch.inference_mode()
def uncond_embedding(parts: PipelineParts, graphs: dict[str, GraphSpec]) -> tuple[np.ndarray, np.ndarray]:
    """The empty prompt's (hidden states, pooled) for classifier-free guidance, as the served text_encoder computes them."""
    from build_engines.tokenize import TowerTokenizer

    hidden, pooled = [], None
    for tower in parts.towers:
        tok = TowerTokenizer(tower.tokenizer_json, parts.token_len, parts.special_ids)
        out = graphs[tower.name].module(torch.from_numpy(tok([""])))
        hidden.append(out[0].numpy())
        if tower.pooled:
            pooled = out[1].numpy()
    return np.concatenate(hidden, axis=-1).astype(np.float32), pooled.astype(np.float32)


def build(cfg: BuildConfig, log=print) -> BuildReport:
    from build_engines import tensorrt as trt_build

    if cfg.target not in ("onnx", "tensorrt"):
        raise ValueError(f"target must be onnx or tensorrt, got {cfg.target!r}")
    skipped = trt_build.unavailable() if cfg.target == "tensorrt" else None
    if skipped:
        log(f"TensorRT skipped: {skipped}")
    parts = load(cfg.model_dir)
    kind = serve_kind(cfg) if not skipped else serve_kind(dataclasses.replace(cfg, target="onnx"))
    work = Path(cfg.work_dir or Path(cfg.out_repo).parent / (Path(cfg.out_repo).name + "_onnx"))
    unet_batch = 2 * cfg.max_batch_size
    graphs = {s.name: s for s in graph_specs(parts)}
    parity, times = [], {}
    out = Path(cfg.out_repo)
    if out.exists():
        shutil.rmtree(out)
    engine_names = {t.name: f"{t.name}_engine" for t in parts.towers}
    for name, spec in graphs.items():
        t = time.perf_counter()
        onnx_path = export_onnx(spec, work / name / "model.onnx")
        times[name] = time.perf_counter() - t
        checks = check_parity(spec, onnx_path)
        parity += checks
        log(f"{name}: exported in {times[name]:.1f}s; parity " + ", ".join(f"b{p.batch} max abs {p.max_abs_err:.2e} rel {p.max_rel_err:.2e}"
                                                                          for p in checks))
        if not all(p.ok for p in checks):
            raise RuntimeError(f"{name}: onnxruntime disagrees with PyTorch beyond tolerance: {checks}")
        model = engine_names.get(name, name)
        max_batch = unet_batch if name.startswith("unet") else cfg.max_batch_size
        version = out / model / "1"
        version.mkdir(parents=True, exist_ok=True)
        if kind == "tensorrt_plan":
            trt_build.build_engine(onnx_path, version / "model.plan", max_batch)
        else:
            shutil.copy(onnx_path, version / "model.onnx")
            for extra in onnx_path.parent.glob("*"):  # external weight files of >2 GB graphs
                if extra.name != "model.onnx":
                    shutil.copy(extra, version / extra.name)
            if kind == "python":
                shutil.copy(MODELS_DIR / "onnx_runner.py", version / "model.py")
        (out / model / "config.pbtxt").write_text(engine_config(model, kind, spec, max_batch, _dtypes(spec), cfg))
    write_pipeline_models(cfg, parts, graphs, engine_names, out)
    repo_cfg = repository_config(cfg, parts)
    load_list = models_to_load(repo_cfg) + sorted(engine_names.values())
    (out / "models_to_load.txt").write_text("\n".join(load_list) + "\n")
    report = BuildReport(cfg.target, kind, parity, skipped, load_list, times, str(out))
    (out / "build_report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report


def repository_config(cfg: BuildConfig, parts: PipelineParts) -> RepositoryConfig:
    dims = ModelDims(token_len=parts.token_len, hidden_dim=parts.hidden_dim, pooled_dim=parts.pooled_dim, latent_shape=parts.latent_shape,
                     image_size=parts.image_size)
    return RepositoryConfig(step_skip_levels=cfg.step_skip_levels, num_inference_steps=cfg.num_inference_steps, max_batch_size=cfg.max_batch_size,
                            dims=dims, with_fast="unet_fast" in parts.extra_unets)


def write_pipeline_models(cfg: BuildConfig, parts: PipelineParts, graphs: dict[str, GraphSpec], engine_names: dict[str, str], out: Path) -> None:
    """Everything around the engines: the tokenizing text_encoder, denoisers, cache, ensembles."""
    repo_cfg = repository_config(cfg, parts)
    replaced = {"text_encoder/config.pbtxt", "unet/config.pbtxt", "unet/1/model.py", "unet_fast/config.pbtxt", "unet_fast/1/model.py", "vae_decoder/config.pbtxt"}
    for rel, text in render_repository(repo_cfg).items():
        if rel in replaced:
            continue
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    shutil.copytree(PROJECT_REPOSITORY / "cache_retrieval" / "1", out / "cache_retrieval" / "1", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    hidden, pooled = uncond_embedding(parts, graphs)
    for variant in repo_cfg.variants:  # each denoiser reads the empty prompt's embedding from its own version dir
        np.savez(out / denoiser_name(variant) / "1" / "uncond.npz", hidden=hidden, pooled=pooled)
    te = out / "text_encoder" / "1"
    te.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS_DIR / "text_encoder.py", te / "model.py")
    specs = []
    for tower in parts.towers:
        (te / f"{tower.name}.tokenizer.json").write_text(tower.tokenizer_json, encoding="utf-8")
        specs.append({"engine": engine_names[tower.name], "pooled": tower.pooled, "file": f"{tower.name}.tokenizer.json",
                      "token_len": parts.token_len, "special_ids": parts.special_ids})
    (te / "tokenizers.json").write_text(json.dumps(specs, indent=2))
    d = repo_cfg.dims
    te_cfg = (f'name: "text_encoder"\nbackend: "python"\nmax_batch_size: {cfg.max_batch_size}\n'
              + _io("input", [_tensor("PROMPT", "TYPE_STRING", (1,))])
              + _io("output", [_tensor("ENCODER_HIDDEN_STATES", "TYPE_FP32", (d.token_len, d.hidden_dim)), _tensor("TEXT_EMBEDS", "TYPE_FP32", (d.pooled_dim,))])
              + "instance_group [ { kind: KIND_CPU count: 1 } ]\ndynamic_batching { max_queue_delay_microseconds: 0 }\n" + _params({}))
    (out / "text_encoder" / "config.pbtxt").write_text(te_cfg)
