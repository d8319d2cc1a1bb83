"""Where things live on disk: one definition of the project root and the folders under it."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = PROJECT_ROOT / "model_repository"
PROFILES_DIR = PROJECT_ROOT / "profiles"
RUNS_DIR = PROJECT_ROOT / "runs"
DOCS_DIR = PROJECT_ROOT / "docs"
STATE_DIR = PROJECT_ROOT / ".triton"
"""Runtime state of detached servers (pid files, logs, the Python backend's symlinks)."""
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
"""Replay data beside the checkout: prompts, arrival traces, GPU measurements (see its README)."""
CPU_PROFILE = PROFILES_DIR / "cpu_tiny.json"
CPU_PAIRS = PROFILES_DIR / "cpu_tiny.pairs.npz"
"""Ground-truth (prompt, cached source, K) triples of the embedded model (``argus build-pairs``)."""
CPU_PAIRS_RETEST = PROFILES_DIR / "cpu_tiny.pairs.retest.npz"
"""The same triples measured again with independent seeds (``argus build-pairs --retest``): how much
of each label is the prompt pair and how much the seeds, so what any predictor can reach."""
GPU_PROFILE = PROFILES_DIR / "gpu_sdxl_a100.json"


def paper_scale_profile() -> Path:
    """The profile of paper-scale simulations: a measured SD-XL GPU profile (``profiles/gpu_sdxl_<gpu>.json``,
    from ``argus gpu-profile --measure`` or ``--from-measurements``) where one is committed, else the cited A100 one."""
    measured = sorted(p for p in PROFILES_DIR.glob("gpu_sdxl_*.json") if p != GPU_PROFILE)
    return measured[0] if measured else GPU_PROFILE
