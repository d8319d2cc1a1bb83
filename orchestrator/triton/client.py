"""Calling the t2i ensembles over gRPC with tritonclient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from orchestrator.triton.repository import ensemble_name, variant_k


def infer_input(name: str, arr: np.ndarray, dtype: str) -> grpcclient.InferInput:
    """One named tensor for a tritonclient gRPC request."""
    inp = grpcclient.InferInput(name, list(arr.shape), dtype)
    inp.set_data_from_numpy(arr)
    return inp


def t2i_inputs(prompts: list[str], seeds: list[int], latents: np.ndarray | None = None) -> list[grpcclient.InferInput]:
    """The ensemble inputs for a batch: PROMPT (BYTES [N,1]), SEED (INT64 [N,1]), optional LATENT."""
    p = np.array([s.encode("utf-8") for s in prompts], dtype=np.object_).reshape(-1, 1)
    s = np.asarray(seeds, dtype=np.int64).reshape(-1, 1)
    arrays = [("PROMPT", p, "BYTES"), ("SEED", s, "INT64")]
    if latents is not None:
        arrays.append(("LATENT", np.ascontiguousarray(latents, dtype=np.float32), "FP32"))
    return [infer_input(name, arr, dtype) for name, arr, dtype in arrays]


def generate(
    client: grpcclient.InferenceServerClient,
    prompts: list[str],
    seeds: list[int],
    variant: str = "k0",
    latents: np.ndarray | None = None,
    timeout_s: float | None = None,
) -> np.ndarray:
    """Images (N, H, W, 3) uint8 from ``t2i_<variant>``; K>0 variants need the start ``latents``."""
    return generate_with_levels(client, prompts, seeds, variant, latents, timeout_s, levels=False)[0]


def generate_with_levels(
    client: grpcclient.InferenceServerClient,
    prompts: list[str],
    seeds: list[int],
    variant: str = "k0",
    latents: np.ndarray | None = None,
    timeout_s: float | None = None,
    levels: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, LEVEL_LATENTS (N, levels, C, h, w) or None): the latents at every step-skip level."""
    if variant_k(variant) > 0 and latents is None:
        raise ValueError(f"variant {variant} starts from a cached latent: pass latents")
    names = ["IMAGE"] + (["LEVEL_LATENTS"] if levels else [])
    outputs = [grpcclient.InferRequestedOutput(n) for n in names]
    result = client.infer(ensemble_name(variant), t2i_inputs(prompts, seeds, latents), outputs=outputs, client_timeout=timeout_s)
    return result.as_numpy("IMAGE"), result.as_numpy("LEVEL_LATENTS") if levels else None


def generate_png(url: str, prompt: str, output: Path, k: int = 0, seed: int = 0, source: str | None = None, fast: bool = False,
                 scale: int = 4) -> Path:
    """``argus generate``: one image over gRPC; K>0 starts from the latent at step K of ``source``'s
    K=0 generation (default: the prompt's own). Saved nearest-neighbour upscaled by ``scale``."""
    from PIL import Image

    from orchestrator.triton.repository import RepositoryConfig

    client = grpcclient.InferenceServerClient(url)
    if fast or k == 0:
        images, _ = generate_with_levels(client, [prompt], [seed], "fast" if fast else "k0", levels=False)
    else:
        levels = sorted(RepositoryConfig().step_skip_levels)
        if k not in levels:
            raise ValueError(f"--k must be one of {levels}")
        _, lv = generate_with_levels(client, [source or prompt], [seed], "k0")
        images, _ = generate_with_levels(client, [prompt], [seed], f"k{k}", latents=lv[:, levels.index(k)], levels=False)
    img = Image.fromarray(images[0])
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(output)
    return output
