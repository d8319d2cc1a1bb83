"""The orchestrator's front door against a real tritonserver: tritonclient and perf_analyzer call
it like Triton; policies decide; bad input is refused; under overload argus approximates and
returns to full quality when the load drops."""

from __future__ import annotations

import subprocess
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.frontdoor import serve
from orchestrator.profile.measure import LivePath, build_profile, measure_quality
from orchestrator.triton.client import infer_input
from orchestrator.triton.repository import RepositoryConfig
from tests.conftest import free_port_block

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def profile_path(triton, tmp_path_factory):
    """A small but real profile: latencies measured through the test server, quality measured."""
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    repo = RepositoryConfig()
    quality = measure_quality(num_prompts=16, pool_size=24)
    build_profile(LivePath.connect(triton.config.grpc_url, repo.cached_levels), repo, quality, fast_load_time_s=4.0,
                  batches=(1, 2), repeats=1).save(path)
    return path


def start_frontdoor(triton, profile_path, policy, extra_workers=(), **kw):
    port = free_port_block(2)
    kw.setdefault("allow_unauthenticated", "auth_token" not in kw)
    kw.setdefault("http_port", None)
    cfg = FrontDoorConfig(workers=[triton.config.grpc_url, *extra_workers], profile_path=profile_path, policy=policy, port=port,
                          metrics_port=None, **kw)
    server, engine = serve(cfg)
    return server, engine, grpcclient.InferenceServerClient(f"127.0.0.1:{port}")


@pytest.fixture(scope="module")
def argus(triton, profile_path):
    server, engine, client = start_frontdoor(triton, profile_path, "argus", plan_interval_s=0.5, default_slo_ms=3000)
    yield engine, client
    server.stop(0)
    engine.close()


def t2i_inputs(prompt: bytes | str, seed=0, slo_ms=None, tenant=None):
    data = prompt if isinstance(prompt, bytes) else prompt.encode()
    arrays = [("PROMPT", np.array([data], dtype=np.object_), "BYTES"), ("SEED", np.array([seed], np.int64), "INT64")]
    if slo_ms is not None:
        arrays.append(("SLO_MS", np.array([slo_ms], np.float32), "FP32"))
    if tenant is not None:
        arrays.append(("TENANT", np.array([tenant.encode()], dtype=np.object_), "BYTES"))
    return [infer_input(name, arr, dt) for name, arr, dt in arrays]


def test_tritonclient_gets_an_image_and_the_decision(argus):
    _, client = argus
    assert client.is_server_ready() and client.is_model_ready("t2i")
    res = client.infer("t2i", t2i_inputs("a red circle on the left", seed=3))
    assert res.as_numpy("IMAGE").shape == (32, 32, 3) and res.as_numpy("IMAGE").dtype == np.uint8
    params = res.get_response(as_json=True)["parameters"]
    assert params["variant"]["string_param"] in {"k0", "k5", "k10", "k15", "k20", "k25", "fast"}
    assert float(params["predicted_quality"]["string_param"]) > 0
    engine, _ = argus
    variant = params["variant"]["string_param"]
    assert engine.scorer.flush(30)  # scored off the response path, in the sampler's thread
    assert engine.metrics.value("argus_measured_clip_score_count", {"variant": variant}) >= 1  # measured beside predicted


@pytest.mark.parametrize(
    "inputs,model,message",
    [
        (lambda: t2i_inputs(""), "t2i", "empty"),
        (lambda: t2i_inputs("a" * 100_000), "t2i", "100000 bytes"),
        (lambda: t2i_inputs(b"\xff\xfe bad"), "t2i", "UTF-8"),
        (lambda: t2i_inputs("a red circle", slo_ms=-5), "t2i", "SLO_MS"),
        (lambda: t2i_inputs("a red\x00 circle"), "t2i", "control characters"),
        (lambda: t2i_inputs("a red circle", tenant="bad\x07tenant"), "t2i", "TENANT"),
        (lambda: t2i_inputs("a red circle"), "t2i_k0", "unknown model"),
    ],
)
def test_bad_input_gets_invalid_argument_and_others_are_unaffected(argus, inputs, model, message):
    _, client = argus
    with pytest.raises(InferenceServerException) as err:
        client.infer(model, inputs())
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT" and message.lower() in err.value.message().lower()
    assert client.infer("t2i", t2i_inputs("a blue square")).as_numpy("IMAGE").shape == (32, 32, 3)


def test_model_control_is_not_reachable_through_the_front_door(argus):
    _, client = argus
    with pytest.raises(InferenceServerException) as err:
        client.load_model("t2i_k0")
    assert "UNIMPLEMENTED" in err.value.status()


def test_perf_analyzer_runs_against_the_front_door(argus, tmp_path):
    from orchestrator.triton.perf import perf_analyzer_command, perf_analyzer_env

    engine, _ = argus
    csv = tmp_path / "fd.csv"
    cmd = perf_analyzer_command("t2i", f"127.0.0.1:{engine.cfg.port}", "1", 2000, csv, 1, 1000)
    r = subprocess.run(cmd, env=perf_analyzer_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert float(csv.read_text().splitlines()[1].split(",")[1]) > 0


def test_clipper_ha_never_approximates(triton, profile_path):
    server, engine, client = start_frontdoor(triton, profile_path, "clipper-ha", default_slo_ms=50)
    try:
        for i in range(4):  # repeated prompt: the cache holds it, and the SLO is hopeless
            res = client.infer("t2i", t2i_inputs("a small red square at the top", seed=i))
            assert res.get_response(as_json=True)["parameters"]["variant"]["string_param"] == "k0"
        assert engine.metrics.value("argus_variant_total", {"variant": "k0"}) == 4
    finally:
        server.stop(0)
        engine.close()


def _open_loop(client, rate_rps: float, seconds: float, prompts: list[str]) -> list:
    """Send at a fixed rate regardless of completions (open loop); returns the results."""
    results = []

    def cb(result=None, error=None):
        results.append(error if error is not None else result)

    n = int(rate_rps * seconds)
    t0 = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, t0 + i / rate_rps - time.monotonic()))
        client.async_infer("t2i", t2i_inputs(prompts[i % len(prompts)], seed=i), cb)
    deadline = time.monotonic() + 120
    while len(results) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return results


def test_argus_approximates_under_overload_and_recovers(argus):
    engine, client = argus
    prompts = ["a large red circle on the left", "two small blue squares", "a green triangle at the top on a gray background"]
    for p in prompts:  # fill the cache
        client.infer("t2i", t2i_inputs(p))
    approximated_before = sum(engine.metrics.value("argus_variant_total", {"variant": v}) for v in engine.policy.variants if v != "k0")
    k0_capacity = 1000.0 / engine.profile.variants["k0"].latency_ms[1]
    planned, done = [], threading.Event()

    def sample():  # the plan while the load is on (after the drain it may already be back at 1.0)
        while not done.wait(0.1):
            planned.append(engine.metrics.value("argus_planned_quality"))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        _open_loop(client, rate_rps=3 * k0_capacity, seconds=8, prompts=prompts)
    finally:
        done.set()
        sampler.join()
    approximated = sum(engine.metrics.value("argus_variant_total", {"variant": v}) for v in engine.policy.variants if v != "k0")
    assert approximated > approximated_before, "under 3x the k0 capacity argus must approximate"
    assert min(planned) < 1.0
    # The plan reached Triton: the denoisers' instance counts follow it (model-control API).
    from orchestrator.triton.control import instance_count

    tc = engine.workers.client(engine.cfg.workers[0])
    # Every denoiser's count was set from the plan during the load (the gauge apply_instances
    # writes), and Triton runs exactly that many instances. Which variant gets the extra instance
    # depends on the plan's mix (one carrying half the planned traffic), so it is not asserted.
    w0 = engine.cfg.workers[0]

    def set_and_running():  # read twice around Triton's answer: a replan may land in between
        out = {}
        for v in (v for v in engine.policy.variants if v != "fast"):
            before = engine.metrics.value("argus_denoiser_instances", {"worker": w0, "model": f"denoiser_{v}"})
            running = instance_count(tc, f"denoiser_{v}")
            out[v] = (before, running, engine.metrics.value("argus_denoiser_instances", {"worker": w0, "model": f"denoiser_{v}"}))
        return out

    for _ in range(20):  # instance counts are applied off the control loop: the last may still be landing
        seen = set_and_running()
        if all(a == r == b for a, r, b in seen.values()):
            break
        time.sleep(0.5)
    assert all(a in (1, engine.cfg.max_instances) and a == r == b for a, r, b in seen.values()), seen
    # Load drops to a trickle: the plan returns to full quality and requests get k0 again.
    deadline = time.monotonic() + 30
    while engine.metrics.value("argus_planned_quality") < 0.999 and time.monotonic() < deadline:
        client.infer("t2i", t2i_inputs(prompts[0]))
        time.sleep(0.5)
    assert engine.metrics.value("argus_planned_quality") >= 0.999
    deadline = time.monotonic() + 30  # full quality planned: k0 gets the instances again
    while instance_count(tc, "denoiser_k0") != engine.cfg.max_instances and time.monotonic() < deadline:
        time.sleep(0.5)
    assert instance_count(tc, "denoiser_k0") == engine.cfg.max_instances
    # A new prompt gets full quality again (a repeated one may take its own cached latent:
    # an exact match is the same image at less cost).
    res = client.infer("t2i", t2i_inputs("a large purple square at the bottom on a white background"))
    assert res.get_response(as_json=True)["parameters"]["variant"]["string_param"] == "k0"


def test_bearer_token_is_enforced_when_configured(triton, profile_path):
    server, engine, client = start_frontdoor(triton, profile_path, "clipper-ht", auth_token="s3cret")
    try:
        with pytest.raises(InferenceServerException) as err:
            client.infer("t2i", t2i_inputs("a red circle"))
        assert "UNAUTHENTICATED" in err.value.status()
        res = client.infer("t2i", t2i_inputs("a red circle"), headers={"authorization": "Bearer s3cret"})
        assert res.get_response(as_json=True)["parameters"]["variant"]["string_param"] == "fast"
    finally:
        server.stop(0)
        engine.close()


def test_two_tritonservers_form_a_cluster(triton, profile_path):
    """A second real server on other loopback ports: the front door balances across both."""
    from orchestrator.triton.server import TritonServer
    from tests.conftest import triton_config

    second = TritonServer(triton_config(("unet", "gen_k0"))).start()
    server, engine, client = start_frontdoor(triton, profile_path, "clipper-ha", extra_workers=[second.config.grpc_url])
    try:
        results = []

        def cb(result=None, error=None):
            results.append(error if error is not None else result.get_response(as_json=True)["parameters"]["worker"]["string_param"])

        for i in range(6):
            client.async_infer("t2i", t2i_inputs(f"a red circle number {i}", seed=i), cb)
        deadline = time.monotonic() + 120
        while len(results) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(isinstance(r, str) for r in results), results
        assert set(results) == {triton.config.grpc_url, second.config.grpc_url}
    finally:
        server.stop(0)
        engine.close()
        second.stop()


def test_argus_resumes_from_the_source_its_pair_predictor_ranks_best(triton, client, profile_path):
    """With the shipped pair predictor (``--pair-table``), argus resumes from the cached source
    predicted to keep the image best, not the most similar one NIRVANA would take: here the source
    that differs only in colour beats the closer one whose background differs (the world's cells:
    a background is set in the first steps and cannot be undone). The image is the one resumed
    from that source's stored latent, and the reported quality is the predictor's for that pair."""
    from orchestrator.paths import CPU_PAIRS
    from orchestrator.serve.workers import TritonWorkers
    from orchestrator.triton.client import generate, generate_with_levels

    prompt = "a orange circle at the top on a blue background"
    near, far = "a orange circle at the top on a yellow background", "a white circle at the top on a blue background"
    server, engine, fd = start_frontdoor(triton, profile_path, "argus", pair_table=CPU_PAIRS, default_slo_ms=10_000)
    tenant, url = "pair-ranked", triton.config.grpc_url
    try:
        for seed, source in ((11, near), (12, far)):  # both cached, by the front door's own k0 generations
            res = fd.infer("t2i", t2i_inputs(source, seed=seed, tenant=tenant))
            assert res.get_response(as_json=True)["parameters"]["variant"]["string_param"] == "k0"
        workers = TritonWorkers([url], timeout_s=60)
        deadline = time.monotonic() + 10
        while (workers.probe(prompt, tenant).candidate_ids[-1] >= 0).sum() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the inserts run after the answers
        probe = workers.probe(prompt, tenant)
        ids = {p: int(workers.probe(p, tenant).entry_ids[-1]) for p in (near, far)}
        assert probe.candidate_ids[-1, 0] == ids[near], "the background-swapped source is the most similar"
        k0_ms = engine.profile.variants["k0"].latency_ms[1]
        res = fd.infer("t2i", t2i_inputs(prompt, seed=5, slo_ms=0.75 * k0_ms, tenant=tenant))  # k0 cannot make it
        params = {name: v["string_param"] for name, v in res.get_response(as_json=True)["parameters"].items()}
        variant, k = params["variant"], int(params["k"])
        assert variant in {"k5", "k10", "k15", "k20", "k25"} and k == engine.profile.variants[variant].k, params
        j = engine.cached_levels.index(k)
        embs = {ids[p]: probe.candidate_embeddings[j][list(probe.candidate_ids[j]).index(ids[p])] for p in (near, far)}
        pair = engine.policy.ctx.pair
        q = {p: float(pair.predict_step(probe.embedding, embs[ids[p]][None], np.array([k]))[0]) for p in (near, far)}
        assert q[far] > q[near], q
        assert float(params["predicted_quality"]) == pytest.approx(q[far], abs=1e-3)
        got = res.as_numpy("IMAGE").astype(int)
        resumed = {p: generate(client, [prompt], [5], variant, generate_with_levels(client, [p], [seed], "k0")[1][:, j])[0].astype(int)
                   for p, seed in ((far, 12), (near, 11))}
        # The same image up to a rounding step or two (measured 2 here, where argus's plan has re-set
        # the denoisers' instance counts; test_live_path, with no plan, is bit-identical); the near
        # source's yellow background is another image (measured 234).
        assert np.abs(got - resumed[far]).max() <= 4 < np.abs(got - resumed[near]).max()
    finally:
        server.stop(0)
        engine.close()
