"""How a model inside a worker reaches the approximate cache: BLS to ``cache_retrieval`` in the same
server, or gRPC to a cache endpoint of its own (``CACHE_URL``), always within a time budget.

The probe looks candidates up through it, the denoiser fetches the chosen entry's latent and inserts
its own step latents through it, so no latent travels through the orchestrator. Every call answers
``None`` instead of raising when the cache is down, slow or evicted the entry: the caller then
serves as k0, which costs quality, never the request.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

import numpy as np

MODEL = "cache_retrieval"
log = logging.getLogger("argus.cache_link")


class CacheLink:
    """Pooled embeddings go to the cache as the text encoder gives them: the cache normalises its keys."""

    def __init__(self, url: str = "", budget_ms: float = 50.0):
        # ARGUS_CACHE_URL (set by the server launcher, or a pod's env) overrides the repository's default.
        self.url = os.environ.get("ARGUS_CACHE_URL", url)
        self.budget_s = budget_ms / 1000.0
        self._client = None
        self._inserts: queue.Queue | None = None

    @classmethod
    def from_params(cls, params: dict[str, str]) -> CacheLink:
        """From a model's config parameters (CACHE_URL, CACHE_BUDGET_MS; written by the repository)."""
        return cls(params.get("CACHE_URL", ""), float(params.get("CACHE_BUDGET_MS", "50")))

    # ------------------------------------------------------------------ one call, local or remote
    INSERT_BUDGET_S = 2.0
    """Inserts run after the answer, so they may wait longer than a lookup (a busy cache must not drop them)."""

    def _call(self, inputs: dict[str, np.ndarray], outputs: list[str], budget_s: float | None = None) -> dict[str, np.ndarray] | None:
        try:
            budget_s = budget_s or self.budget_s
            return self._remote(inputs, outputs, budget_s) if self.url else self._local(inputs, outputs, budget_s)
        except Exception as e:  # noqa: BLE001 - the cache is an optimisation: down or slow means no cache
            log.warning("cache %s unavailable: %s", self.url or "(local)", str(e)[:200])
            return None

    def _local(self, inputs, outputs, budget_s):
        import triton_python_backend_utils as pb_utils

        req = pb_utils.InferenceRequest(model_name=MODEL, requested_output_names=outputs,
                                        inputs=[pb_utils.Tensor(k, v) for k, v in inputs.items()],
                                        timeout=int(budget_s * 1e6))
        resp = req.exec()
        if resp.has_error():
            raise RuntimeError(resp.error().message())
        return {n: pb_utils.get_output_tensor_by_name(resp, n).as_numpy() for n in outputs}

    def _remote(self, inputs, outputs, budget_s):
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import np_to_triton_dtype

        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url)
        ins = []
        for name, arr in inputs.items():
            t = grpcclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            t.set_data_from_numpy(arr)
            ins.append(t)
        res = self._client.infer(MODEL, ins, outputs=[grpcclient.InferRequestedOutput(n) for n in outputs], client_timeout=budget_s)
        return {n: res.as_numpy(n) for n in outputs}

    @staticmethod
    def _tenants(tenants: list[str]) -> np.ndarray:
        return np.array([t.encode() for t in tenants], dtype=np.object_).reshape(-1, 1)

    # ------------------------------------------------------------------ what the models ask
    LOOKUP_OUTPUTS = ["ENTRY_IDS", "SIMILARITY", "CANDIDATE_IDS", "CANDIDATE_SIMILARITY", "CANDIDATE_EMBEDS"]

    def lookup(self, pooled: np.ndarray, tenants: list[str]) -> dict[str, np.ndarray] | None:
        """``LOOKUP_OUTPUTS``: the best entry id and similarity per K, (N, cached levels), and the
        sources the front door may rank, (N, cached levels, candidates[, dim])."""
        return self._call({"TEXT_EMBEDS": pooled, "TENANT": self._tenants(tenants)}, self.LOOKUP_OUTPUTS)

    def fetch(self, entry_ids: np.ndarray, k: int, tenants: list[str], pooled: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(latents (N, ...), found (N,) bool): each entry's latent at step K (not found: evicted)."""
        n = len(entry_ids)
        out = self._call({"TEXT_EMBEDS": pooled, "TENANT": self._tenants(tenants),
                          "STEP_SKIP_K": np.full((n, 1), k, np.int32), "ENTRY_ID": np.asarray(entry_ids, np.int64).reshape(-1, 1)},
                         ["LATENT", "K"])
        return None if out is None else (out["LATENT"], out["K"].reshape(-1) == k)

    def insert_later(self, pooled: np.ndarray, levels: np.ndarray, tenants: list[str]) -> None:
        """Queue an insert of generations' step latents; a background thread sends it, so the
        response never waits for the cache. A full queue drops the insert (a lost future hit)."""
        if self._inserts is None:
            self._inserts = queue.Queue(maxsize=256)
            threading.Thread(target=self._insert_loop, daemon=True, name="argus-cache-insert").start()
        try:
            self._inserts.put_nowait((np.ascontiguousarray(pooled, np.float32), np.ascontiguousarray(levels, np.float32), list(tenants)))
        except queue.Full:
            log.warning("cache insert queue full; insert dropped")

    def _insert_loop(self) -> None:
        while True:
            pooled, levels, tenants = self._inserts.get()
            try:
                self._call({"TEXT_EMBEDS": pooled, "TENANT": self._tenants(tenants), "LEVEL_LATENTS": levels}, ["ENTRY_IDS"], self.INSERT_BUDGET_S)
            finally:
                self._inserts.task_done()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait, at most ``timeout_s``, until every queued insert has been sent: a worker that stops
        (SIGTERM, an unload) still caches its last answers. True if none is left."""
        if self._inserts is None:
            return True
        deadline = time.monotonic() + timeout_s
        while self._inserts.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._inserts.unfinished_tasks
