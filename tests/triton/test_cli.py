"""The argus command line against real tritonservers: generate, perf_analyzer, triton up/status/down."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import free_port_block

pytestmark = pytest.mark.triton
ARGUS = [sys.executable, "-m", "orchestrator.cli"]


def run(args, timeout=300):
    return subprocess.run(ARGUS + args, capture_output=True, text=True, timeout=timeout)


def test_generate_writes_png_and_is_deterministic(triton, tmp_path):
    url = triton.config.grpc_url
    outs = []
    for name, extra in (("a", []), ("b", []), ("c", ["--k", "10", "--source", "a blue square"])):
        path = tmp_path / f"{name}.png"
        r = run(["generate", "a red circle on the left", "-o", str(path), "--seed", "4", "--url", url, "--scale", "1"] + extra)
        assert r.returncode == 0, r.stderr
        outs.append(np.asarray(Image.open(path)))
    assert outs[0].shape == (32, 32, 3)
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_generate_rejects_unknown_k(triton, tmp_path):
    r = run(["generate", "a red circle", "-o", str(tmp_path / "x.png"), "--k", "7", "--url", triton.config.grpc_url])
    assert r.returncode != 0 and "--k must be one of" in (r.stdout + r.stderr)


def test_perf_analyzer_runs_against_the_ensembles(triton, tmp_path):
    for model in ("t2i_k0", "t2i_k25"):
        csv = tmp_path / f"{model}.csv"
        r = run(["perf", "--model", model, "--url", triton.config.grpc_url, "--concurrency", "1", "--interval-ms", "1500", "--csv", str(csv),
                 "--stability-pct", "1000"])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        rows = csv.read_text().splitlines()
        assert rows[0].startswith("Concurrency,Inferences/Second")
        assert float(rows[1].split(",")[1]) > 0


def test_triton_up_status_down(tmp_path):
    port = free_port_block() + 1
    r = run(["triton", "up", "--grpc-port", str(port), "--models", "text_encoder,vae_decoder"])
    try:
        assert r.returncode == 0, r.stderr
        st = run(["triton", "status", "--grpc-port", str(port)])
        info = json.loads(st.stdout)
        assert info["running"] and info["ready_models"] == ["text_encoder", "vae_decoder"]
        assert info["grpc"].startswith("127.0.0.1:")
    finally:
        down = run(["triton", "down", "--grpc-port", str(port)])
    assert "stopped" in down.stdout
    assert json.loads(run(["triton", "status", "--grpc-port", str(port)]).stdout) == {"running": False}


def test_failed_model_load_reports_and_leaves_nothing_running(tmp_path):
    from orchestrator.triton.server import TritonServer
    from tests.conftest import triton_config

    server = TritonServer(triton_config(("no_such_model",), ready_timeout_s=60))
    with pytest.raises(RuntimeError, match="exited"):
        server.start()
    assert server.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(server.proc.pid, 0)
