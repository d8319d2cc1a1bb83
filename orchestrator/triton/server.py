"""Lifecycle of a real ``tritonserver`` process from the nvidia-pytriton wheel.

Follows ../shared/design/triton-on-cpu.md: a backend directory of symlinks to the wheel's Python
backend and stub, the venv's ``bin`` first on PATH (the stub finds the venv through it), Python's
LIBDIR on LD_LIBRARY_PATH, a precompiled repository (so ``__pycache__`` never forces full
reloads), explicit model control, auto-complete off, every listener on 127.0.0.1.
"""

from __future__ import annotations

import compileall
import dataclasses
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from orchestrator.paths import MODEL_REPOSITORY, STATE_DIR


@dataclasses.dataclass
class TritonConfig:
    """How one tritonserver is started. Ports must be free; each server of a cluster gets its own."""

    model_repository: Path = MODEL_REPOSITORY
    http_port: int = 18100
    grpc_port: int = 18101
    metrics_port: int = 18102
    address: str = "127.0.0.1"
    """Bind address of all three listeners; loopback unless deliberately exposed."""
    load_models: tuple[str, ...] = ()
    """Models loaded at start; a failure to load one makes the server exit (gotcha G10)."""
    log_path: Path | None = None
    ready_timeout_s: float = 180.0
    stop_timeout_s: float = 15.0
    exit_timeout_s: int = 5
    torch_threads: int = 1
    """torch threads per model instance (ARGUS_TORCH_THREADS, read by the models)."""
    cache_dir: Path | None = None
    """Where cache_retrieval persists its latents (ARGUS_CACHE_DIR); None keeps the cache in memory."""
    cache_url: str | None = None
    """The cache endpoint this worker's models use (ARGUS_CACHE_URL, gRPC host:port); None: the
    cache_retrieval model in this server."""
    extra_args: tuple[str, ...] = ()

    @property
    def grpc_url(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.address}:{self.http_port}"


def pytriton_dirs() -> tuple[Path, Path]:
    """(the wheel's tritonserver dir, its bundled libs dir)."""
    import pytriton

    site = Path(pytriton.__file__).resolve().parents[1]
    return site / "pytriton" / "tritonserver", site / "nvidia_pytriton.libs"


def backend_dir() -> Path:
    """A backends/python dir of symlinks to the wheel's files (the stub is not in the wheel's backend dir)."""
    ts, _ = pytriton_dirs()
    out = STATE_DIR / "backends"
    py = out / "python"
    py.mkdir(parents=True, exist_ok=True)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    links = {
        "libtriton_python.so": ts / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": ts / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": ts / "python_backend_stubs" / ver / "triton_python_backend_stub",
    }
    for name, target in links.items():
        link = py / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target)
    return out


def server_env(torch_threads: int) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["ARGUS_TORCH_THREADS"] = str(torch_threads)
    env.setdefault("OMP_NUM_THREADS", str(torch_threads))
    return env


def precompile(repository: Path) -> None:
    """Write __pycache__ now, so the stub's own writes never mark a model modified (gotcha G3)."""
    compileall.compile_dir(str(repository), quiet=1)


def terminate_group(pid: int, timeout_s: float, exited) -> None:
    """SIGTERM the process group, wait up to ``timeout_s`` for ``exited()``, then SIGKILL the group
    (the Python stubs share it: nothing is left behind, even if the server ignored SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + (timeout_s if sig == signal.SIGTERM else 0)
        while not exited() and time.monotonic() < deadline:
            time.sleep(0.1)


def _pid_exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class TritonServer:
    """One tritonserver process. Use as a context manager or call start()/stop()."""

    def __init__(self, config: TritonConfig):
        self.config = config
        self.proc: subprocess.Popen | None = None
        self._log = None

    def command(self) -> list[str]:
        ts, _ = pytriton_dirs()
        c = self.config
        cmd = [
            str(ts / "bin" / "tritonserver"),
            f"--model-repository={Path(c.model_repository).resolve()}",
            f"--backend-directory={backend_dir()}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            f"--http-address={c.address}",
            f"--http-port={c.http_port}",
            f"--grpc-address={c.address}",
            f"--grpc-port={c.grpc_port}",
            f"--metrics-address={c.address}",
            f"--metrics-port={c.metrics_port}",
            f"--exit-timeout-secs={c.exit_timeout_s}",
            "--log-verbose=0",
        ]
        cmd += [f"--load-model={m}" for m in c.load_models]
        return cmd + list(c.extra_args)

    def start(self, wait: bool = True) -> TritonServer:
        c = self.config
        precompile(Path(c.model_repository))
        log_path = Path(c.log_path or STATE_DIR / f"tritonserver-{c.grpc_port}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.log_path = log_path
        # A new session: the stubs share the server's process group, so killpg reaches them all.
        env = server_env(c.torch_threads)
        if c.cache_dir is not None:
            env["ARGUS_CACHE_DIR"] = str(Path(c.cache_dir).resolve())
        if c.cache_url:
            env["ARGUS_CACHE_URL"] = c.cache_url
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.config.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode} before ready; see {self.log_path}:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"tritonserver not ready after {self.config.ready_timeout_s}s; see {self.log_path}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM (graceful: in-flight requests finish within exit_timeout_s), then SIGKILL the group."""
        if self.proc is None:
            return None
        terminate_group(self.proc.pid, self.config.stop_timeout_s, lambda: self.proc.poll() is not None)
        rc = self.proc.wait()
        if self._log:
            self._log.close()
        return rc

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# `argus triton up|down|status`: a detached server whose pid is kept in .triton/server.json


def _state_file(grpc_port: int) -> Path:
    return STATE_DIR / f"server-{grpc_port}.json"


def up(config: TritonConfig) -> dict:
    st = status(config.grpc_port)
    if st.get("running"):
        return st
    server = TritonServer(config).start()
    info = {"pid": server.proc.pid, "grpc": config.grpc_url, "http": config.http_url, "log": str(server.log_path)}
    _state_file(config.grpc_port).write_text(json.dumps(info))
    return {**info, "running": True}


def status(grpc_port: int) -> dict:
    path = _state_file(grpc_port)
    if not path.exists():
        return {"running": False}
    info = json.loads(path.read_text())
    if _pid_exited(info["pid"]):
        path.unlink()
        return {"running": False}
    return {**info, "running": True}


def down(grpc_port: int, timeout_s: float = 15.0) -> bool:
    st = status(grpc_port)
    if not st.get("running"):
        return False
    terminate_group(st["pid"], timeout_s, lambda: _pid_exited(st["pid"]))
    _state_file(grpc_port).unlink(missing_ok=True)
    return True


def up_detached(grpc_port: int, models: tuple[str, ...] = (), repository: Path | None = None) -> dict:
    """``argus triton up``: the project's repository (written first) or another one, its listed
    models (``models_to_load.txt``) unless ``models`` names some; HTTP on grpc-1, metrics grpc+1."""
    from orchestrator.triton.repository import PROJECT_REPOSITORY, RepositoryConfig, models_to_load, write_repository

    if repository is None:
        cfg = RepositoryConfig()
        write_repository(cfg, PROJECT_REPOSITORY)
        default = models_to_load(cfg)
    else:
        listed = repository / "models_to_load.txt"
        default = listed.read_text().split() if listed.exists() else []
    return up(TritonConfig(model_repository=repository or PROJECT_REPOSITORY, grpc_port=grpc_port, http_port=grpc_port - 1,
                           metrics_port=grpc_port + 1, load_models=tuple(models) or tuple(default)))


def status_with_models(grpc_port: int) -> dict:
    """``argus triton status``: whether the detached server runs, and which models are ready."""
    st = status(grpc_port)
    if st.get("running"):
        import tritonclient.grpc as grpcclient

        try:
            index = grpcclient.InferenceServerClient(st["grpc"]).get_model_repository_index(as_json=True).get("models", [])
            st["ready_models"] = sorted(m["name"] for m in index if m.get("state") == "READY")
        except Exception as e:  # noqa: BLE001 - status reports, it does not fail
            st["error"] = str(e)
    return st
