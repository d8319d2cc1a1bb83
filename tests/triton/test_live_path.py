"""The live serving path on a real tritonserver: one probe and one generation per request, the cache
latent fetched and the step latents inserted inside Triton, bit-identical images under any load,
and a cache endpoint that may die without costing a request."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from orchestrator.serve.workers import TritonWorkers
from orchestrator.triton.client import generate, generate_with_levels

pytestmark = pytest.mark.triton


def wait_for_entry(workers: TritonWorkers, prompt: str, tenant: str, timeout_s: float = 10.0):
    """The insert runs after the answer: poll the probe until the prompt's own entry is there (at
    K=25 at least: a generation that itself started from a cached latent at K only stores K and up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = workers.probe(prompt, tenant)
        if probe.similarity[-1] > 0.999:
            return probe
        time.sleep(0.05)
    raise AssertionError(f"no cache entry for {prompt!r} after {timeout_s} s")


def test_probe_and_generation_match_the_prompt_ensembles(triton, client):
    """gen_<variant> on the probe's embeddings gives t2i_<variant>'s image; the k0 generation's
    latents land in the cache by themselves, and gen_k25 from that entry equals t2i_k25 from them."""
    workers = TritonWorkers([triton.config.grpc_url], timeout_s=60)
    prompt, tenant = "a small red circle at the top on a blue background", "live-path"
    probe = workers.probe(prompt, tenant)
    assert probe.cache_ok and probe.calls == 1 and (probe.entry_ids == -1).all()
    image, k_used = workers.generate(triton.config.grpc_url, "k0", probe, 3, None, tenant)
    ref, levels = generate_with_levels(client, [prompt], [3], "k0")
    assert k_used == 0 and np.array_equal(image, ref)
    probe = wait_for_entry(workers, prompt, tenant)
    image, k_used = workers.generate(triton.config.grpc_url, "k25", probe, 3, int(probe.entry_ids[-1]), tenant)
    assert k_used == 25 and np.array_equal(image, generate(client, [prompt], [3], "k25", levels[:, -1]))
    # An entry that is gone: the same request runs from seeded noise as k0, and says so.
    image, k_used = workers.generate(triton.config.grpc_url, "k25", probe, 3, 10**9, tenant)
    assert k_used == 0 and np.array_equal(image, ref)


def test_probe_offers_several_sources_per_k_and_any_of_them_can_be_resumed_from(triton, client):
    """t2i_probe's candidates: every cached source of the tenant per K, most similar first, with
    the embedding each was stored under (what the pair predictor reads); the first is ENTRY_IDS'.
    A generation resumed from the second candidate is t2i_k25 from that source's own latent."""
    url = triton.config.grpc_url
    workers = TritonWorkers([url], timeout_s=60)
    tenant = "candidates"
    sources = ["a small red circle at the top on a blue background", "a small green circle at the top on a blue background",
               "a large red square on the left on a white background"]
    latents = {}
    for i, p in enumerate(sources):
        workers.generate(url, "k0", workers.probe(p, tenant), 40 + i, None, tenant)
        latents[p] = generate_with_levels(client, [p], [40 + i], "k0")[1][:, -1]
        wait_for_entry(workers, p, tenant)
    probe = workers.probe(sources[0], tenant)
    ids, sims, embs = probe.candidate_ids, probe.candidate_similarity, probe.candidate_embeddings
    assert ids.shape == (5, 4) and embs.shape == (5, 4, probe.embedding.shape[0])
    for j in range(5):
        found = ids[j] >= 0
        assert found.sum() == 3 and (ids[j, ~found] == -1).all() and ids[j, 0] == probe.entry_ids[j]
        assert all(sims[j, c] >= sims[j, c + 1] for c in range(2)) and sims[j, 0] == pytest.approx(1.0, abs=1e-4)
        for c in range(3):  # each embedding is the stored key: its cosine with the prompt is the similarity
            e = embs[j, c] / np.linalg.norm(embs[j, c])
            assert float(e @ probe.embedding) == pytest.approx(float(sims[j, c]), abs=1e-4)
    second = int(ids[-1, 1])
    image, k_used = workers.generate(url, "k25", probe, 3, second, tenant)
    neighbour = next(p for p in sources[1:] if workers.probe(p, tenant).entry_ids[-1] == second)
    assert k_used == 25 and np.array_equal(image, generate(client, [sources[0]], [3], "k25", latents[neighbour]))


def test_same_request_alone_and_in_a_mixed_burst_is_bit_identical(triton):
    """k0, k10 and k25 (from cached latents) requests, each alone and then inside a concurrent burst
    of all of them (shared dynamic batches of the UNet, different batch compositions): same bytes."""
    url = triton.config.grpc_url
    workers = TritonWorkers([url], timeout_s=120)
    tenant = "repro"
    sources = [f"a large {c} square on the left on a white background" for c in ("red", "green", "blue")]
    for i, p in enumerate(sources):
        workers.generate(url, "k0", workers.probe(p, tenant), 100 + i, None, tenant)
    probes = [wait_for_entry(workers, p, tenant) for p in sources]
    jobs = [(v, probes[i], 7 + i) for i in range(3) for v in ("k0", "k10", "k25")]

    def run(job):
        variant, probe, seed = job
        entry = None if variant == "k0" else int(probe.entry_ids[(5, 10, 15, 20, 25).index(int(variant[1:]))])
        return TritonWorkers([url], timeout_s=120).generate(url, variant, probe, seed, entry, tenant)

    alone = [run(j) for j in jobs]
    assert [k for _, k in alone] == [0, 10, 25] * 3
    with ThreadPoolExecutor(len(jobs) * 2) as pool:
        burst = list(pool.map(run, jobs * 2))
    for i, (image, k) in enumerate(burst):
        ref_image, ref_k = alone[i % len(jobs)]
        assert k == ref_k and np.array_equal(image, ref_image), f"{jobs[i % len(jobs)][0]} differs inside the burst"


@pytest.fixture()
def servers():
    """Start tritonservers on fresh ports (stopped at the end): ``servers(models, cache_url=None)``."""
    from orchestrator.triton.server import TritonServer
    from tests.conftest import triton_config

    started = []

    def start(models, **kw):
        started.append(TritonServer(triton_config(tuple(models), **kw)).start())
        return started[-1]

    yield start
    for s in started:
        s.stop()


def test_cache_endpoint_killed_mid_run_every_request_is_answered(servers):
    """A cache endpoint of its own (t2i_probe + cache_retrieval) behind a worker that reaches it over
    gRPC; killed mid-run, the front door serves the rest as k0, with no error, and counts it."""
    import os
    import signal

    from orchestrator.paths import CPU_PROFILE
    from orchestrator.serve.config import FrontDoorConfig
    from orchestrator.serve.frontdoor import serve
    from tests.conftest import free_port_block
    from tests.triton.test_frontdoor import t2i_inputs

    cache = servers(("cache_retrieval", "text_encoder", "t2i_probe"))
    worker = servers(("unet", "text_encoder", "t2i_probe", "gen_k0", "gen_k25"), cache_url=cache.config.grpc_url)
    port = free_port_block(1)
    cfg = FrontDoorConfig(workers=[worker.config.grpc_url], cache=cache.config.grpc_url, profile_path=CPU_PROFILE, policy="nirvana",
                          port=port, metrics_port=None, http_port=None, allow_unauthenticated=True, score_quality=False, max_instances=0,
                          default_slo_ms=60_000.0)
    server, engine = serve(cfg)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    prompts = [f"a small {c} triangle at the bottom on a black background" for c in ("red", "green", "blue", "white")]
    answers, errors = [], []
    lock = threading.Lock()

    def send(prompt, seed):
        try:
            res = client.infer("t2i", t2i_inputs(prompt, seed=seed))
            with lock:
                answers.append(res.get_response(as_json=True)["parameters"]["variant"]["string_param"])
        except Exception as e:  # noqa: BLE001 - collected: the assertion is that there are none
            with lock:
                errors.append(e)

    try:
        for i, p in enumerate(prompts):
            send(p, i)
        for p in prompts:  # the repeats find their own entries (inserted by the worker over gRPC)
            wait_for_entry(engine.workers, p, "")
        threads = [threading.Thread(target=send, args=(p, 10 + i)) for i, p in enumerate(prompts * 3)]
        for i, t in enumerate(threads):
            t.start()
            if i == 3:
                os.killpg(cache.proc.pid, signal.SIGKILL)  # mid-run, without a graceful stop
            time.sleep(0.05)
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert len(answers) == len(prompts) * 4
        assert "k25" in answers and answers.count("k0") >= len(prompts)
        assert engine.metrics.value("argus_cache_unavailable_total") + engine.metrics.value("argus_cache_fallback_k0_total") > 0
    finally:
        server.stop(0)
        engine.close()
