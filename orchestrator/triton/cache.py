"""Talking to the ``cache_retrieval`` Triton model: lookups, inserts and warm-up."""

from __future__ import annotations

import dataclasses

import numpy as np
from orchestrator.triton.client import infer_input

MODEL = "cache_retrieval"


@dataclasses.dataclass
class Retrieval:
    entry_ids: np.ndarray  # (N, levels) best entry per cached level, -1 where none
    similarity: np.ndarray  # (N, levels)
    latent: np.ndarray  # (N, C, h, w): the latent at ``k`` (zeros on a miss)
    k: np.ndarray  # (N,) the level of ``latent``; 0 = miss


def _common(embeddings: np.ndarray, tenants: list[str] | None) -> list:
    inputs = [infer_input("TEXT_EMBEDS", np.ascontiguousarray(embeddings, dtype=np.float32), "FP32")]
    if tenants is not None:
        inputs.append(infer_input("TENANT", np.array([t.encode() for t in tenants], dtype=np.object_).reshape(-1, 1), "BYTES"))
    return inputs


def _result(res) -> Retrieval:
    return Retrieval(res.as_numpy("ENTRY_IDS"), res.as_numpy("SIMILARITY"), res.as_numpy("LATENT"), res.as_numpy("K").reshape(-1))


def lookup(client, embeddings: np.ndarray, k: int | None = None, tenants: list[str] | None = None, timeout_s: float | None = None) -> Retrieval:
    """Best cached latents for each embedding; with ``k`` the latent at that level if it clears its threshold."""
    inputs = _common(embeddings, tenants)
    if k is not None:
        inputs.append(infer_input("STEP_SKIP_K", np.full((len(embeddings), 1), k, np.int32), "INT32"))
    return _result(client.infer(MODEL, inputs, client_timeout=timeout_s))


def insert(client, embeddings: np.ndarray, level_latents: np.ndarray, tenants: list[str] | None = None, timeout_s: float | None = None) -> np.ndarray:
    """Store generations' latents (the ensembles' LEVEL_LATENTS output); returns their entry ids."""
    inputs = _common(embeddings, tenants) + [infer_input("LEVEL_LATENTS", np.ascontiguousarray(level_latents, dtype=np.float32), "FP32")]
    ids = client.infer(MODEL, inputs, client_timeout=timeout_s).as_numpy("ENTRY_IDS")
    return ids.max(axis=1)


def encode(client, prompts: list[str], timeout_s: float | None = None) -> np.ndarray:
    """Unit-norm pooled prompt embeddings from the text_encoder model (what the cache is keyed on,
    and what the prompt classes and the quality predictor read)."""
    out = []
    for i in range(0, len(prompts), 8):
        part = np.array([p.encode() for p in prompts[i : i + 8]], dtype=np.object_).reshape(-1, 1)
        out.append(client.infer("text_encoder", [infer_input("PROMPT", part, "BYTES")], client_timeout=timeout_s).as_numpy("TEXT_EMBEDS"))
    return unit_rows(np.concatenate(out))


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Unit-norm rows: the embedding the cache is keyed on and the prompt classes and predictor read."""
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass(frozen=True)
class WarmBatch:
    """Prompts generated at full quality: their k0 images, and what ``insert`` stores."""

    prompts: list[str]
    images: np.ndarray
    embeddings: np.ndarray
    level_latents: np.ndarray


def warm_entries(client, prompts: list[str], seed: int = 0, batch: int = 8, progress=None):
    """Generate prompts at full quality (K=0), one ``WarmBatch`` per batch, so one generation can
    warm several tenants."""
    from orchestrator.triton.client import generate_with_levels

    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        images, levels = generate_with_levels(client, chunk, list(range(seed + i, seed + i + len(chunk))), "k0")
        yield WarmBatch(chunk, images, encode(client, chunk), levels)
        if progress:
            progress(len(chunk))


def warm(client, prompts: list[str], seed: int = 0, batch: int = 8, tenant: str | None = None, progress=None) -> int:
    """Generate every prompt at full quality (K=0) and insert its latents; returns entries added."""
    added = 0
    for b in warm_entries(client, prompts, seed, batch, progress):
        insert(client, b.embeddings, b.level_latents, None if tenant is None else [tenant] * len(b.prompts))
        added += len(b.prompts)
    return added


def warm_from_file(url: str, prompts_path, limit: int = 0, tenant: str | None = None, console=None) -> int:
    """``argus cache warm``: a text file, one prompt per line (empty and over-long lines skipped)."""
    import tritonclient.grpc as grpcclient
    from rich.progress import Progress

    from triton_backend.validation import MAX_PROMPT_BYTES

    lines = [ln.strip() for ln in prompts_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    lines = [ln for ln in lines if len(ln.encode()) <= MAX_PROMPT_BYTES][: limit or None]
    client = grpcclient.InferenceServerClient(url)
    with Progress(console=console, disable=console is None) as bar:
        task = bar.add_task("warming cache", total=len(lines))
        return warm(client, lines, tenant=tenant, progress=lambda n: bar.advance(task, n))


def metrics_text(metrics_url: str) -> str:
    """``argus cache stats``: the cache's custom metrics (hit rate by K, entries, bytes, evictions) from Triton's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://{metrics_url}/metrics", timeout=5) as r:
        lines = [ln for ln in r.read().decode().splitlines() if ln.startswith("argus_cache")]
    return "\n".join(lines) or "no cache metrics (is cache_retrieval loaded?)"
