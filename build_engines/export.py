"""torch -> ONNX for each pipeline part, with an onnxruntime parity check against PyTorch.

Tensor names are the Triton models' own (SAMPLE, TIMESTEP, ... NOISE_PRED; LATENT -> IMAGE), so an
exported graph drops into the repository in place of the Python model it replaces. Every graph
has a dynamic batch axis. The VAE decoder's graph includes the post-processing (scale, clamp,
uint8, NHWC), so its output is the served image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from build_engines.pipeline_dir import PipelineParts, TextTower

OPSET = 17


class TextEncoderGraph(torch.nn.Module):
    def __init__(self, tower: TextTower, hidden_layer: str):
        super().__init__()
        self.model, self.pooled, self.last = tower.model, tower.pooled, hidden_layer == "last"

    def forward(self, input_ids):
        out = self.model(input_ids=input_ids, output_hidden_states=not self.last)
        hidden = out.last_hidden_state if self.last else out.hidden_states[-2]
        return (hidden, out.text_embeds) if self.pooled else (hidden,)


class UNetGraph(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
        return self.unet(sample, timestep.reshape(-1), encoder_hidden_states=encoder_hidden_states,
                         added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample


class VaeDecoderGraph(torch.nn.Module):
    def __init__(self, vae, scaling_factor: float):
        super().__init__()
        self.vae, self.scale = vae, scaling_factor

    def forward(self, latent):
        x = self.vae.decode(latent / self.scale).sample
        x = torch.round((x.clamp(-1, 1) + 1) * 127.5).to(torch.uint8)
        return x.permute(0, 2, 3, 1)


@dataclasses.dataclass
class GraphSpec:
    """One exported part: its module, named inputs (example arrays, batch first) and output names."""

    name: str
    module: torch.nn.Module
    inputs: dict[str, np.ndarray]
    outputs: list[str]


def graph_specs(parts: PipelineParts, batch: int = 2) -> list[GraphSpec]:
    rng = np.random.default_rng(0)
    c, h, w = parts.latent_shape
    specs = []
    for tower in parts.towers:
        vocab = tower.model.config.vocab_size
        ids = rng.integers(0, vocab, (batch, parts.token_len)).astype(np.int64)
        specs.append(GraphSpec(tower.name, TextEncoderGraph(tower, parts.hidden_layer), {"INPUT_IDS": ids},
                               ["HIDDEN_STATES", "TEXT_EMBEDS"] if tower.pooled else ["HIDDEN_STATES"]))
    image = parts.image_size
    unet_inputs = {
        "SAMPLE": rng.standard_normal((batch, c, h, w)).astype(np.float32),
        "TIMESTEP": rng.uniform(1, 999, (batch, 1)).astype(np.float32),
        "ENCODER_HIDDEN_STATES": rng.standard_normal((batch, parts.token_len, parts.hidden_dim)).astype(np.float32),
        "TEXT_EMBEDS": rng.standard_normal((batch, parts.pooled_dim)).astype(np.float32),
        "TIME_IDS": np.tile(np.array([image, image, 0, 0, image, image], np.float32), (batch, 1)),
    }
    specs.append(GraphSpec("unet", UNetGraph(parts.unet), unet_inputs, ["NOISE_PRED"]))
    for name, unet in parts.extra_unets.items():
        specs.append(GraphSpec(name, UNetGraph(unet), unet_inputs, ["NOISE_PRED"]))
    specs.append(GraphSpec("vae_decoder", VaeDecoderGraph(parts.vae, parts.vae_scaling_factor),
                           {"LATENT": rng.standard_normal((batch, c, h, w)).astype(np.float32)}, ["IMAGE"]))
    return specs


def export_onnx(spec: GraphSpec, path: Path) -> Path:
    """One graph with a dynamic batch axis (TorchScript-based exporter: stable for diffusers' UNet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(torch.from_numpy(a) for a in spec.inputs.values())
    axes = {n: {0: "batch"} for n in [*spec.inputs, *spec.outputs]}
    import warnings

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes: the batch axis stays dynamic
        torch.onnx.export(spec.module.eval(), args, str(path), input_names=list(spec.inputs), output_names=spec.outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    return path


@dataclasses.dataclass
class Parity:
    name: str
    batch: int
    max_abs_err: float
    max_rel_err: float
    """max |onnx - torch| / max |torch|."""
    tolerance: float
    ok: bool


TOLERANCE = {"vae_decoder": 2.0}
"""Max abs error allowed: uint8 images may round one way or the other (2 levels); float graphs 1e-3 relative."""


def check_parity(spec: GraphSpec, path: Path, batches: tuple[int, ...] = (1, 3)) -> list[Parity]:
    """onnxruntime (CPU) against PyTorch on random inputs at several batch sizes."""
    from triton_backend.ort import ort_session

    sess = ort_session(path, threads=None)
    out = []
    for b in batches:
        feeds = {k: np.resize(v, (b, *v.shape[1:])) for k, v in spec.inputs.items()}
        with torch.inference_mode():
            ref = spec.module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in feeds.values()))
        ref = [r.numpy() for r in (ref if isinstance(ref, tuple) else (ref,))]
        got = sess.run(spec.outputs, feeds)
        abs_err = max(float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) for g, r in zip(got, ref))
        scale = max(float(np.max(np.abs(r.astype(np.float64)))) for r in ref)
        rel = abs_err / max(scale, 1e-12)
        tol = TOLERANCE.get(spec.name)
        ok = abs_err <= tol if tol is not None else rel <= 1e-3
        out.append(Parity(spec.name, b, abs_err, rel, tol if tol is not None else 1e-3, ok))
    return out
