"""``argus serve``: start local workers if none are given, run the front door until SIGTERM/SIGINT, drain."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import signal
import sys
import threading
from pathlib import Path

from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.frontdoor import serve


@dataclasses.dataclass
class LocalWorkers:
    """Tritonservers this process starts when no --workers are given."""

    count: int = 1
    base_port: int = 18600
    """Worker i uses HTTP/gRPC/metrics ports base+10i .. base+10i+2."""
    variants: tuple[str, ...] = ()
    """Variants they load (empty: all)."""
    cache_dir: Path | None = None


def start_local_workers(local: LocalWorkers) -> dict:
    """url -> started TritonServer, each with the project's repository."""
    from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, write_repository
    from orchestrator.triton.server import TritonConfig, TritonServer

    repo = RepositoryConfig()
    write_repository(repo, PROJECT_REPOSITORY)
    load = tuple(models_to_load(repo, list(local.variants) or None))
    servers = {}
    for i in range(local.count):
        base = local.base_port + 10 * i
        tcfg = TritonConfig(http_port=base, grpc_port=base + 1, metrics_port=base + 2, load_models=load,
                            cache_dir=None if local.cache_dir is None else local.cache_dir / f"worker{i}")
        servers[tcfg.grpc_url] = TritonServer(tcfg).start()
    return servers


def run_server(cfg: FrontDoorConfig, local: LocalWorkers, no_auth: bool, log_level: str, echo=print) -> None:
    """Serve until a signal, then drain: no new admissions, in-flight requests finish (up to the
    drain timeout), local tritonservers stop (their cache is persisted)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Handlers first: a SIGTERM that lands while workers start, or between the front door
    # answering ServerReady and this thread reaching wait(), must drain, not kill the process.
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    token = cfg.auth_token
    if token is None and not no_auth:
        token = secrets.token_urlsafe(24)
        print(f"generated bearer token (pass --auth-token/ARGUS_AUTH_TOKEN to choose one, --no-auth to disable): {token}",
              file=sys.stderr, flush=True)
    servers = {} if cfg.workers else start_local_workers(local)
    cfg = dataclasses.replace(cfg, auth_token=token, allow_unauthenticated=no_auth and token is None, workers=cfg.workers or list(servers))
    server, engine = serve(cfg, servers=servers)
    http = f", HTTP + OpenAI on :{cfg.http_port}" if cfg.http_port else ""
    echo(f"front door on {cfg.address}:{cfg.port} (gRPC{http}; policy {cfg.policy}, workers {cfg.workers}); metrics on :{cfg.metrics_port}")
    done.wait()
    drained = engine.drain(cfg.drain_timeout_s)
    server.stop(grace=1).wait()  # drain already waited for in-flight requests
    engine.close()
    for s in servers.values():
        s.stop()
    echo(f"stopped ({'drained' if drained else 'drain deadline passed'}; {len(servers)} local tritonserver(s) stopped)")
