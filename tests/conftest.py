"""Shared fixtures. ``triton`` is a real tritonserver (never a mock) serving the whole repository."""

from __future__ import annotations

import socket

import pytest

from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, write_repository
from orchestrator.triton.server import TritonConfig, TritonServer


def free_port_block(n: int = 3) -> int:
    """A base port with n consecutive free ports on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


def triton_config(models: tuple[str, ...], **kw) -> TritonConfig:
    base = free_port_block()
    return TritonConfig(http_port=base, grpc_port=base + 1, metrics_port=base + 2, load_models=models, **kw)


ALL_MODELS = tuple(models_to_load(RepositoryConfig()))


@pytest.fixture(scope="session")
def triton():
    """One server for the session with every model of the default repository loaded."""
    write_repository(RepositoryConfig(), PROJECT_REPOSITORY)
    server = TritonServer(triton_config(ALL_MODELS)).start()
    yield server
    server.stop()


@pytest.fixture()
def client(triton):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(triton.config.grpc_url)
