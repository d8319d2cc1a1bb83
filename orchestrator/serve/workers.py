"""The engine's only way to Triton: the workers' gRPC clients and the two calls a request makes.

    probe     t2i_probe on the cache endpoint: the prompt's embeddings and the cache's best
              candidate per K                                                   -> Probe
    generate  gen_<variant> on the chosen worker: those embeddings and the chosen entry's id;
              the latent is fetched, and the step latents inserted, inside Triton -> (images, K used)

The engine depends on this small surface (``probe``, ``generate``, ``ready``), so a test can put a
fake in its place and replay a run on a virtual clock.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import tritonclient.grpc as grpcclient

from orchestrator.triton.cache import unit_rows
from orchestrator.triton.client import infer_input
from orchestrator.triton.repository import PROBE, ensemble_name, generation_name, variant_k

log = logging.getLogger("argus.frontdoor")

WORKER_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    # A restarted worker must be reachable at once: short reconnect backoff, and a channel of its
    # own (channels otherwise share subchannels, and with them a long backoff, process-wide).
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


def worker_client(url: str) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(url, channel_args=WORKER_CHANNEL_ARGS)


def is_deadline_exceeded(error: Exception) -> bool:
    return "DEADLINE_EXCEEDED" in str(getattr(error, "status", lambda: "")()) or "Deadline Exceeded" in str(error)


@dataclasses.dataclass(frozen=True)
class Probe:
    """What t2i_probe answers for one prompt."""

    hidden: np.ndarray
    """(1, tokens, dim) text encoder hidden states: the generation's conditioning, so the prompt is encoded once."""
    pooled: np.ndarray
    """(1, dim) pooled embedding as the text encoder gives it (conditioning)."""
    embedding: np.ndarray
    """(dim,) the same, unit norm: what the cache, the prompt classes and the predictor read."""
    entry_ids: np.ndarray
    """(cached levels,) the best cache entry per K, -1 where none."""
    similarity: np.ndarray
    """(cached levels,) their similarities."""
    cache_ok: bool
    """False when the cache did not answer within its budget (the request is then served as k0)."""
    calls: int = 1
    """Triton calls this probe took (2 when the cache endpoint failed and a worker answered)."""
    candidate_ids: np.ndarray | None = None
    """(cached levels, C) the sources per K the cache offers, most similar first, -1 pads."""
    candidate_similarity: np.ndarray | None = None
    """(cached levels, C) their similarities."""
    candidate_embeddings: np.ndarray | None = None
    """(cached levels, C, dim) the prompt embeddings they were stored under."""


def _text(value: str) -> np.ndarray:
    return np.array([[value.encode()]], dtype=np.object_)


def generation_inputs(variant: str, probe: Probe, seeds: list[int], entry_id: int | None, tenant: str | None) -> list:
    """gen_<variant>'s inputs for one prompt's probe, one row per seed (``argus profile`` sends batches)."""
    n = len(seeds)
    inputs = [infer_input("ENCODER_HIDDEN_STATES", np.repeat(probe.hidden, n, axis=0), "FP32"),
              infer_input("TEXT_EMBEDS", np.repeat(probe.pooled, n, axis=0), "FP32"),
              infer_input("SEED", np.asarray(seeds, np.int64).reshape(n, 1), "INT64")]
    if variant_k(variant) > 0:
        inputs.append(infer_input("CACHE_ENTRY", np.full((n, 1), entry_id, np.int64), "INT64"))
    if variant != "fast":
        inputs.append(infer_input("TENANT", np.repeat(_text(tenant or ""), n, axis=0), "BYTES"))
    return inputs


class TritonWorkers:
    """gRPC clients of the workers and of the cache endpoint (``cache``: a tritonserver serving
    t2i_probe and cache_retrieval; default the first worker, as on one machine)."""

    def __init__(self, urls: list[str], timeout_s: float, cache: str | None = None):
        self.urls = list(urls)
        self.timeout_s = timeout_s
        self.cache = cache or self.urls[0]
        self.clients = {w: worker_client(w) for w in dict.fromkeys([*self.urls, self.cache])}

    def client(self, worker: str) -> grpcclient.InferenceServerClient:
        return self.clients[worker]

    def probe(self, prompt: str, tenant: str | None) -> Probe:
        """One call for the decision. The cache endpoint first; if it does not answer, a worker's
        own t2i_probe (which then reports the cache as unavailable): requests go on as k0."""
        inputs = [infer_input("PROMPT", _text(prompt), "BYTES")] + ([infer_input("TENANT", _text(tenant), "BYTES")] if tenant else [])
        error = None
        for calls, url in enumerate(dict.fromkeys([self.cache, *self.urls]), start=1):
            try:
                res = self.clients[url].infer(PROBE, inputs, client_timeout=self.timeout_s)
            except Exception as e:  # noqa: BLE001 - try the next endpoint
                error = e
                if url == self.cache:
                    log.warning("cache endpoint %s did not answer the probe: %s", url, str(e)[:200])
                continue
            pooled = res.as_numpy("TEXT_EMBEDS")
            return Probe(res.as_numpy("ENCODER_HIDDEN_STATES"), pooled, unit_rows(pooled)[0],
                         res.as_numpy("ENTRY_IDS")[0], res.as_numpy("SIMILARITY")[0],
                         bool(res.as_numpy("CACHE_OK")[0, 0]) and url == self.cache, calls,
                         res.as_numpy("CANDIDATE_IDS")[0], res.as_numpy("CANDIDATE_SIMILARITY")[0], res.as_numpy("CANDIDATE_EMBEDS")[0])
        raise error

    def generate(self, worker: str, variant: str, probe: Probe, seed: int, entry_id: int | None, tenant: str | None) -> tuple[np.ndarray, int]:
        """(images, the K actually run: 0 when the chosen entry was gone or the cache down)."""
        res = self.clients[worker].infer(generation_name(variant), generation_inputs(variant, probe, [seed], entry_id, tenant),
                                         client_timeout=self.timeout_s)
        return res.as_numpy("IMAGE"), int(res.as_numpy("K_USED")[0, 0])

    def image_size_px(self, variant: str) -> tuple[int, int]:
        """(height, width) of the images a variant's ensemble returns, from its model metadata."""
        for worker in self.urls:
            try:
                meta = self.clients[worker].get_model_metadata(ensemble_name(variant), as_json=True, client_timeout=5.0)
            except Exception:  # noqa: BLE001 - try the next worker
                continue
            shape = next(o["shape"] for o in meta["outputs"] if o["name"] == "IMAGE")
            return int(shape[-3]), int(shape[-2])
        raise RuntimeError(f"no worker answers the metadata of {ensemble_name(variant)}")

    def ready(self, worker: str, fresh_channel: bool) -> bool:
        """Whether a worker answers ready. ``fresh_channel``: probe on a new channel (an old one may
        sit in gRPC's reconnect backoff long after the server is back), which then replaces it."""
        client = worker_client(worker) if fresh_channel else self.clients[worker]
        try:
            ready = bool(client.is_server_ready(client_timeout=2.0))
        except Exception:  # noqa: BLE001 - any failure to answer is "not ready"
            return False
        if ready and fresh_channel:
            self.clients[worker] = client
        return ready
