"""The engine's only way to Triton: the workers' gRPC clients and the calls a request makes.

The engine depends on this small surface (``embed``, ``lookup``, ``generate``, ``insert``,
``probe``), so a test can put a fake in its place and replay a run on a virtual clock.
"""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient

from orchestrator.triton import cache as cache_client
from orchestrator.triton.client import generate_with_levels
from orchestrator.triton.repository import ensemble_name

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


class TritonWorkers:
    """gRPC clients of the workers; the first worker also hosts the text encoder the cache is keyed
    on and the shared cache."""

    def __init__(self, urls: list[str], timeout_s: float):
        self.urls = list(urls)
        self.timeout_s = timeout_s
        self.clients = {w: worker_client(w) for w in self.urls}
        self.cache_worker = self.urls[0]

    def client(self, worker: str) -> grpcclient.InferenceServerClient:
        return self.clients[worker]

    def embed(self, prompt: str) -> np.ndarray:
        """The prompt's unit-norm pooled embedding (what the cache, classes and predictor read)."""
        return cache_client.encode(self.clients[self.cache_worker], [prompt], timeout_s=self.timeout_s)[0]

    def lookup(self, embedding: np.ndarray, tenant: str | None, k: int | None = None) -> cache_client.Retrieval:
        return cache_client.lookup(self.clients[self.cache_worker], embedding[None], k=k, tenants=None if tenant is None else [tenant],
                                   timeout_s=self.timeout_s)

    def generate(self, worker: str, variant: str, prompt: str, seed: int, latents: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        return generate_with_levels(self.clients[worker], [prompt], [seed], variant, latents, timeout_s=self.timeout_s, levels=variant != "fast")

    def insert(self, embedding: np.ndarray, levels: np.ndarray, tenant: str | None) -> None:
        cache_client.insert(self.clients[self.cache_worker], embedding[None], levels, None if tenant is None else [tenant], timeout_s=self.timeout_s)

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

    def probe(self, worker: str, fresh_channel: bool) -> bool:
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
