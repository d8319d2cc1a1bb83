"""The front door over HTTP against a real tritonserver: KServe v2 REST for tritonclient.http and
perf_analyzer -i http, and the OpenAI Images API for the official openai client. One engine
serves both HTTP and gRPC, so the same prompt and seed give the same image on either."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import urllib.error
import urllib.request

import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from orchestrator.paths import PROJECT_ROOT
from orchestrator.policy.router import Decision
from orchestrator.serve.admission import Admitted
from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.frontdoor import serve
from orchestrator.triton.client import infer_input
from tests.conftest import free_port_block

pytestmark = pytest.mark.triton
PROFILE = PROJECT_ROOT / "profiles" / "cpu_tiny.json"
TOKEN = "s3cret-token"
PROMPT = "a small green triangle at the top"


def start(triton, **kw):
    port = free_port_block(2)
    kw.setdefault("auth_token", TOKEN)
    cfg = FrontDoorConfig(workers=[triton.config.grpc_url], profile_path=PROFILE, port=port, http_port=port + 1, metrics_port=None,
                          score_quality=False, **kw)
    door, engine = serve(cfg)
    return door, engine, port + 1


@pytest.fixture(scope="module")
def door(triton):
    """clipper-ha (always k0), so images are comparable across protocols."""
    door, engine, http_port = start(triton, policy="clipper-ha", default_slo_ms=20_000)
    yield engine, http_port
    door.stop(0)
    engine.close()


def openai_client(http_port: int, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key=token, max_retries=0, timeout=60)


def grpc_image(engine, prompt: str, seed: int) -> np.ndarray:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{engine.cfg.port}")
    inputs = [infer_input("PROMPT", np.array([prompt.encode()], dtype=np.object_), "BYTES"),
              infer_input("SEED", np.array([seed], np.int64), "INT64")]
    return client.infer("t2i", inputs, headers={"authorization": f"Bearer {TOKEN}"}).as_numpy("IMAGE")


def png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


# ---------------------------------------------------------------------------- OpenAI Images API
def test_openai_client_generates_images_with_the_decision(door):
    engine, http_port = door
    client = openai_client(http_port)
    assert [m.id for m in client.models.list().data] == ["t2i"]
    raw = client.images.with_raw_response.generate(prompt=PROMPT, n=2, size="32x32", response_format="b64_json", user="team-a",
                                                   extra_body={"seed": 11, "slo_ms": 20_000})
    result = raw.parse()
    images = [png(d.b64_json) for d in result.data]
    assert [im.shape for im in images] == [(32, 32, 3)] * 2
    assert not np.array_equal(images[0], images[1])  # seeds 11 and 12
    decisions = result.model_extra["argus"]
    assert [d["variant"] for d in decisions] == ["k0", "k0"] and [d["seed"] for d in decisions] == [11, 12]
    assert raw.headers["x-argus-variant"] == "k0,k0" and raw.headers["x-argus-k"] == "0,0"
    assert all(0 < float(q) for q in raw.headers["x-argus-predicted-quality"].split(","))
    # One engine behind both protocols: gRPC returns the very same pixels for the same prompt and seed.
    assert np.array_equal(images[1], grpc_image(engine, PROMPT, 12))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(prompt=""), "empty"),
        (dict(prompt="a" * 100_000), "100000 bytes"),
        (dict(prompt=PROMPT, n=99), "'n' must be in 1..4"),
        (dict(prompt=PROMPT, size="1024x1024"), "32x32"),
        (dict(prompt=PROMPT, response_format="url"), "b64_json"),
        (dict(prompt=PROMPT, model="dall-e-3"), "unknown model"),
        (dict(prompt=PROMPT, extra_body={"seed": -1}), "SEED"),
        (dict(prompt=PROMPT, extra_body={"slo_ms": "fast"}), "'slo_ms' must be a number"),
        (dict(prompt=PROMPT, extra_body={"min_quality": 1.5}), "min_quality must be a number in [0, 1]"),
        (dict(prompt=PROMPT, extra_body={"min_quality": "high"}), "min_quality must be a number in [0, 1]"),
    ],
)
def test_openai_bad_input_is_a_400_with_the_reason(door, kwargs, message):
    _, http_port = door
    with pytest.raises(openai.BadRequestError) as err:
        openai_client(http_port).images.generate(**kwargs)
    assert err.value.status_code == 400 and message.lower() in err.value.message.lower()
    assert err.value.body["type"] == "invalid_request_error"  # OpenAI's error JSON shape


def test_openai_wrong_token_is_a_401(door):
    _, http_port = door
    with pytest.raises(openai.AuthenticationError) as err:
        openai_client(http_port, token="wrong").images.generate(prompt=PROMPT)
    assert err.value.status_code == 401 and "bearer token" in err.value.message


def test_openai_overload_is_a_429_with_retry_after_and_draining_a_503(triton):
    door, engine, http_port = start(triton, policy="clipper-ht", max_queue=1)
    try:
        client = openai_client(http_port)
        holder = engine.admit(Admitted("holder", PROMPT, 0, 5000.0, None, engine.clock()))  # the one admission slot, taken
        with pytest.raises(openai.RateLimitError) as err:
            client.images.generate(prompt=PROMPT)
        assert err.value.status_code == 429 and err.value.response.headers["retry-after"] == "1" and "queue full" in err.value.message
        engine.record(holder, Decision(None, None, "test"), None)
        assert png(client.images.generate(prompt=PROMPT).data[0].b64_json).shape == (32, 32, 3)  # the slot is free again
        engine.drain(0)
        with pytest.raises(openai.InternalServerError) as err:
            client.images.generate(prompt=PROMPT)
        assert err.value.status_code == 503 and "shutting down" in err.value.message
    finally:
        door.stop(0)
        engine.close()


def test_min_quality_is_never_served_below_over_openai_grpc_and_http(triton):
    """clipper-ht always picks the fast model; a floor only k0 meets makes every protocol serve k0 (even if
    late), counted in argus_quality_floor_k0_total; without a floor the same policy serves fast. Where no
    worker serves k0 (fast-only workers), the request is refused with the reason instead."""
    door, engine, http_port = start(triton, policy="clipper-ht")  # its workers hold the fast model only
    try:
        with pytest.raises(openai.RateLimitError) as err:
            openai_client(http_port).images.generate(prompt=PROMPT, extra_body={"min_quality": 1.0})
        assert "quality floor" in err.value.message and "no healthy worker serves k0" in err.value.message
    finally:
        door.stop(0)
        engine.close()
    door, engine, http_port = start(triton, policy="clipper-ht", default_slo_ms=20_000, colocated_families=("base", "fast"))
    try:
        client = openai_client(http_port)
        plain = client.images.generate(prompt=PROMPT).model_extra["argus"][0]
        assert plain["variant"] == "fast" and plain["predicted_quality"] < 1.0
        floored = client.images.generate(prompt=PROMPT, extra_body={"min_quality": 1.0}).model_extra["argus"][0]
        assert floored["variant"] == "k0" and floored["reason"].startswith("quality floor")

        grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{engine.cfg.port}")
        inputs = [infer_input("PROMPT", np.array([PROMPT.encode()], dtype=np.object_), "BYTES")]
        res = grpc.infer("t2i", inputs, headers={"authorization": f"Bearer {TOKEN}"}, parameters={"min_quality": 1.0})
        assert res.get_response().parameters["variant"].string_param == "k0"
        with pytest.raises(InferenceServerException) as err:
            grpc.infer("t2i", inputs, headers={"authorization": f"Bearer {TOKEN}"}, parameters={"min_quality": 2.0})
        assert "min_quality must be a number in [0, 1]" in err.value.message()

        http = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
        hin = httpclient.InferInput("PROMPT", [1], "BYTES")
        hin.set_data_from_numpy(np.array([PROMPT.encode()], dtype=np.object_))
        res = http.infer("t2i", [hin], headers={"authorization": f"Bearer {TOKEN}"}, parameters={"min_quality": 1.0})
        assert res.get_response()["parameters"]["variant"] == "k0"
        assert engine.metrics.value("argus_quality_floor_k0_total") == 3
    finally:
        door.stop(0)
        engine.close()


# ---------------------------------------------------------------------------- KServe v2 over HTTP
def test_tritonclient_http_binary_and_json_tensors(door):
    engine, http_port = door
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    headers = {"authorization": f"Bearer {TOKEN}"}
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("t2i")
    meta = client.get_model_metadata("t2i", headers=headers)
    assert [i["name"] for i in meta["inputs"]] == ["PROMPT", "SEED", "SLO_MS", "TENANT"]
    assert client.get_model_config("t2i", headers=headers)["input"][0]["data_type"] == "TYPE_STRING"
    images = []
    for binary in (True, False):  # the binary tensor extension, then plain JSON tensors both ways
        prompt = httpclient.InferInput("PROMPT", [1], "BYTES")
        prompt.set_data_from_numpy(np.array([PROMPT.encode()], dtype=np.object_), binary_data=binary)
        seed = httpclient.InferInput("SEED", [1], "INT64")
        seed.set_data_from_numpy(np.array([5], np.int64), binary_data=binary)
        out = [httpclient.InferRequestedOutput("IMAGE", binary_data=binary)]
        res = client.infer("t2i", [prompt, seed], outputs=out, headers=dict(headers))  # tritonclient writes into the dict
        images.append(res.as_numpy("IMAGE"))
        assert res.get_response()["parameters"]["variant"] == "k0"
    assert images[0].shape == (32, 32, 3) and images[0].dtype == np.uint8
    assert np.array_equal(images[0], images[1]) and np.array_equal(images[0], grpc_image(engine, PROMPT, 5))


@pytest.mark.parametrize(
    "prompt,headers,status,message",
    [
        ("", {"authorization": f"Bearer {TOKEN}"}, 400, "empty"),
        ("a" * 100_000, {"authorization": f"Bearer {TOKEN}"}, 400, "100000 bytes"),
        (PROMPT, {"authorization": "Bearer wrong"}, 401, "bearer token"),
    ],
)
def test_tritonclient_http_errors(door, prompt, headers, status, message):
    _, http_port = door
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    inp = httpclient.InferInput("PROMPT", [1], "BYTES")
    inp.set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
    with pytest.raises(InferenceServerException) as err:
        client.infer("t2i", [inp], headers=headers)
    assert err.value.status() == str(status) and message in err.value.message()


def test_curl_style_json_and_unreachable_model_control(door):
    _, http_port = door
    body = json.dumps({"inputs": [{"name": "PROMPT", "datatype": "BYTES", "shape": [1], "data": [PROMPT]}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/t2i/infer", data=body,
                                 headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    out = json.loads(urllib.request.urlopen(req, timeout=60).read())
    assert out["outputs"][0]["shape"] == [32, 32, 3] and len(out["outputs"][0]["data"]) == 32 * 32 * 3
    bad = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/models/t2i/infer", data=b"{not json",
                                 headers={"authorization": f"Bearer {TOKEN}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(bad, timeout=10)
    assert err.value.code == 400 and "not valid JSON" in json.loads(err.value.read())["error"]
    load = urllib.request.Request(f"http://127.0.0.1:{http_port}/v2/repository/models/t2i_k0/load", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(load, timeout=10)
    assert err.value.code == 404


def test_perf_analyzer_over_http(triton, tmp_path):
    from orchestrator.triton.perf import perf_analyzer_command, perf_analyzer_env

    door, engine, http_port = start(triton, policy="argus", auth_token=None, allow_unauthenticated=True)
    try:
        csv = tmp_path / "http.csv"
        cmd = perf_analyzer_command("t2i", f"127.0.0.1:{http_port}", "1", 2000, csv, 1, 1000, protocol="http")
        r = subprocess.run(cmd, env=perf_analyzer_env(), capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        assert float(csv.read_text().splitlines()[1].split(",")[1]) > 0
        assert engine.metrics.value("argus_requests_total", {"outcome": "ok"}) > 0
    finally:
        door.stop(0)
        engine.close()
