"""A profile for SD-XL on A100 GPUs, written from public figures, for paper-scale simulation.

Latency comes from cited figures (each in ``SOURCES``, and copied into the profile file); quality
per prompt and variant comes from the measured tiny-model profile, since no SD-XL quality can be
measured here. ``argus bench sim --profile profiles/gpu_sdxl_a100.json`` uses it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from orchestrator.profile.schema import Profile, VariantProfile

UNET_STEP_MS = 110.0
"""One SD-XL UNet step (with classifier-free guidance) at 1024x1024, batch 1, A100 fp16."""
VAE_AND_TEXT_MS = 150.0
"""Text encoders plus VAE decode per image."""
BATCH_GAIN = {1: 1.0, 2: 1.12, 4: 1.2, 8: 1.25}
"""Throughput gain of batch b over batch 1 (images/s): small, the GPU is busy at batch 1 already."""
FAST_MODEL_MS = 550.0
"""SDXL-Lightning (4-step distilled SD-XL UNet) per image, batch 1."""
LOAD_TIME_S = 8.0
"""Loading another SD-XL-sized model (UNet weights ~5 GB) onto a GPU worker."""

SOURCES = {
    "unet_step_ms": "Baseten, 'SDXL inference in under 2 seconds' (baseten.co/blog): SDXL 1.0 takes 8-10 s for a 1024x1024 image on an A100 "
    "out of the box (50 steps, CFG); Baseten, '40% faster SDXL inference with NVIDIA TensorRT': TensorRT cuts A100 latency by up to 30%. "
    "110 ms/step x 50 = 5.5 s is the optimized (TensorRT fp16) end of that range and inside issue 6's 80-120 ms.",
    "batch_gain": "Issue 6 (Argus/DiffServe figures): batching gains of only 1.1-1.25x for SD-XL on A100.",
    "fast_model_ms": "baseten.com/library/sdxl-lightning: SDXL-Lightning generates 1024x1024 in 4 UNet steps; 4 x 110 ms + VAE ~ 0.55 s, "
    "issue 6's figure (21medien.de reports ~1 s end to end on A100 including overheads).",
    "load_time_s": "Issue 6: 6-10 s to load a model; SDXL-Lightning weights are 5.14 or 6.94 GB (baseten.com/library/sdxl-lightning).",
    "quality": "Measured on the embedded tiny model by `argus profile` (profiles/cpu_tiny.json): relative quality per prompt and variant.",
}


def sdxl_a100_profile(quality_from: Profile, num_steps: int = 50) -> Profile:
    variants = {}
    for name, vp in quality_from.variants.items():
        if name == "fast":
            base_ms = FAST_MODEL_MS
        else:
            base_ms = (num_steps - vp.k) * UNET_STEP_MS + VAE_AND_TEXT_MS
        latency = {b: base_ms * b / BATCH_GAIN[b] for b in BATCH_GAIN}
        variants[name] = dataclasses.replace(vp, latency_ms=latency, load_time_s=LOAD_TIME_S if name == "fast" else 0.0)
    src = "; ".join(f"{k}: {v}" for k, v in SOURCES.items())
    return Profile({n: VariantProfile(**dataclasses.asdict(v)) for n, v in variants.items()}, quality_from.quality, dict(quality_from.thresholds),
                   source="SD-XL on A100 from public figures. " + src, ground_truth=quality_from.ground_truth)


def write_gpu_profile(quality_from: Path, out: Path) -> Path:
    """``argus gpu-profile``: the cited-figures profile, with the quality table of a measured one."""
    sdxl_a100_profile(Profile.load(quality_from)).save(out)
    return out
