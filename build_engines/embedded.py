"""The embedded model's ONNX graphs for the default repository (runtime 'onnxruntime').

``write_repository`` calls ``ensure_onnx``: each of text_encoder, unet, unet_fast, vae_decoder gets
``1/model.onnx`` exported from the weights in ``tiny_model/weights`` (a few seconds), unless the one
there was exported from the same weights, torch and opset (a ``.stamp`` beside it says so). Another
repository directory copies up-to-date graphs from the project's instead of exporting again.
Files are written to a temporary name and renamed, so a concurrent reader never sees half a graph.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from build_engines.pipeline_dir import PipelineParts, TextTower

SPEC_OF_MODEL = {"text_encoder": "text_encoder_2", "unet": "unet", "unet_fast": "unet_fast", "vae_decoder": "vae_decoder"}


def embedded_parts(weights_dir: Path | None = None) -> PipelineParts:
    """The embedded model as PipelineParts, in memory (what ``save_embedded`` writes to disk)."""
    from transformers import CLIPTextModelWithProjection

    from tiny_model.models import IMAGE_SIZE, UNET_SPECS, load_clip, load_tokenizer, load_unet, load_vae, scheduler_kwargs

    tok = load_tokenizer(weights_dir)
    clip = load_clip(weights_dir, tokenizer=tok)
    text = CLIPTextModelWithProjection(clip.config.text_config.__class__(**{**clip.config.text_config.to_dict(),
                                                                            "projection_dim": clip.config.projection_dim}))
    text.load_state_dict({k: v for k, v in clip.state_dict().items() if k.startswith(("text_model.", "text_projection."))})
    vae, scaling = load_vae(weights_dir)
    unets = {name: load_unet(spec, weights_dir) for name, spec in UNET_SPECS.items()}
    return PipelineParts([TextTower("text_encoder_2", text.eval(), tok._tok.to_str(), True)], unets["unet"], vae, scaling,
                         {n: u for n, u in unets.items() if n != "unet"}, tok.token_len, "last",
                         {"bos": tok.special_id("<bos>"), "eos": tok.eos_id, "pad": tok.special_id("<pad>"), "manual_special": 1}, IMAGE_SIZE, scheduler_kwargs())


def fingerprint(weights_dir: Path | None = None) -> str:
    """What the exported graphs depend on: the weight files, torch's version and the opset."""
    import torch

    from build_engines.export import OPSET
    from tiny_model.models import WEIGHTS_DIR

    h = hashlib.sha1(f"torch {torch.__version__} opset {OPSET}".encode())
    for f in sorted(Path(weights_dir or WEIGHTS_DIR).glob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name} {st.st_size} {int(st.st_mtime)}".encode())
    return h.hexdigest()


def _fresh(path: Path, stamp: str) -> bool:
    s = path.with_suffix(".onnx.stamp")
    return path.exists() and s.exists() and s.read_text() == stamp


def ensure_onnx(repo: Path, models: list[str]) -> list[str]:
    """Make ``repo/<model>/1/model.onnx`` current for each model; returns those (re)written."""
    from build_engines.export import export_onnx, graph_specs
    from orchestrator.paths import MODEL_REPOSITORY as PROJECT_REPOSITORY

    stamp = fingerprint()
    written, specs = [], None
    for model in models:
        path = Path(repo) / model / "1" / "model.onnx"
        if _fresh(path, stamp):
            continue
        tmp = path.with_name(f".model.onnx.{os.getpid()}")
        project = PROJECT_REPOSITORY / model / "1" / "model.onnx"
        if Path(repo).resolve() != PROJECT_REPOSITORY.resolve() and _fresh(project, stamp):
            shutil.copy(project, tmp)
        else:
            if specs is None:
                specs = {s.name: s for s in graph_specs(embedded_parts())}
            export_onnx(specs[SPEC_OF_MODEL[model]], tmp)
        os.replace(tmp, path)
        path.with_suffix(".onnx.stamp").write_text(stamp)
        written.append(model)
    return written
