"""``argus perf``: perf_analyzer (from tritonclient 2.51) against a server or the front door.

perf_analyzer 2.51 needs libb64 and libcudart; both are linked from pytriton's bundled libs
(../shared/design/triton-on-cpu.md, section 6). A string input needs explicit data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orchestrator.paths import STATE_DIR


def perf_analyzer_env() -> dict[str, str]:
    from orchestrator.triton.server import pytriton_dirs

    _, libs = pytriton_dirs()
    out = STATE_DIR / "palibs"
    out.mkdir(parents=True, exist_ok=True)
    for pattern, name in (("libcudart-*.so.12*", "libcudart.so.12"), ("libb64-*.so.0d", "libb64.so.0d")):
        target = next(libs.glob(pattern))
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(out), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def perf_analyzer_command(model: str, url: str, concurrency: str, interval_ms: int, csv: Path | None, batch: int, stability_pct: int = 50,
                          protocol: str = "grpc") -> list[str]:
    """perf_analyzer over gRPC or HTTP with real prompt data."""
    data = STATE_DIR / f"perf_data_{model}.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    row = {"PROMPT": {"content": ["a large red circle on the left and a small blue square on the right"], "shape": [1]}, "SEED": {"content": [7], "shape": [1]}}
    if model.startswith("t2i_k") and model != "t2i_k0":
        row["LATENT"] = {"content": [0.0] * 256, "shape": [4, 8, 8]}
    data.write_text(json.dumps({"data": [row]}))
    pa = Path(sys.executable).parent / "perf_analyzer"
    cmd = [str(pa), "-m", model, "-u", url, "-i", protocol, "--concurrency-range", concurrency, "--measurement-interval", str(interval_ms),
           "--input-data", str(data), "-b", str(batch), "--stability-percentage", str(stability_pct), "--max-trials", "4"]
    return cmd + (["-f", str(csv)] if csv else [])


def run_perf(model: str, url: str, concurrency: str, interval_ms: int, csv: Path | None, batch: int, stability_pct: int,
             protocol: str = "grpc") -> int:
    """Run perf_analyzer; returns its exit code."""
    return subprocess.call(perf_analyzer_command(model, url, concurrency, interval_ms, csv, batch, stability_pct, protocol),
                           env=perf_analyzer_env())
