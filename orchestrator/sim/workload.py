"""Workloads: real arrival traces (../shared/data/traces), scaling, synthetic arrivals, prompt streams.

A ``Trace`` is sorted arrival times in seconds from 0. Loaders read the files as published (see
../shared/data/README.md for sources and licenses) and report a bad row with its file and line.
``scale_to_peak`` compresses time and rescales the rate so that the peak (over ``window_s``
windows) equals a target, e.g. 1.5x the k0 capacity from the profile. Rate-only traces (ServeGen
10-minute aggregates, Azure Functions hourly counts) are turned into arrivals by a Poisson process
whose rate follows the trace; everything is seeded, so live runs and the simulator consume
identical request streams (``request_stream``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import random
from pathlib import Path

import numpy as np

from orchestrator.paths import SHARED_DATA
from tiny_model.world import sample_scene

SHARED = SHARED_DATA
TRACES = {
    "twitter": "traces/proteus_twitter_zipf_exponential_300.csv",
    "azure-code": "traces/AzureLLMInferenceTrace_code.csv",
    "azure-conv": "traces/AzureLLMInferenceTrace_conv.csv",
    "servegen-mm": "traces/servegen_aggregate_rate_10min.csv",
    "maf": "traces/diffserve_maf_hourly_invocations.csv",
}


class TraceError(ValueError):
    """A trace row that cannot be read; the message names file and line."""


@dataclasses.dataclass
class Trace:
    name: str
    arrivals_s: np.ndarray

    @property
    def duration_s(self) -> float:
        return float(self.arrivals_s[-1]) if len(self.arrivals_s) else 0.0

    def peak_rps(self, window_s: float = 1.0) -> float:
        if not len(self.arrivals_s):
            return 0.0
        counts = np.bincount((self.arrivals_s // window_s).astype(int))
        return float(counts.max() / window_s)


def _rows(path: Path, delimiter: str = ","):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for line, row in enumerate(reader, start=2):
            yield line, row


def _num(path: Path, line: int, row: dict, key: str) -> float:
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        raise TraceError(f"{path}:{line}: column {key!r} is not a number: {row.get(key)!r}") from None
    if not np.isfinite(value) or value < 0:
        raise TraceError(f"{path}:{line}: column {key!r} must be finite and >= 0, got {value}")
    return value


def load_arrival_csv(path: Path, column: str, unit_s: float, name: str) -> Trace:
    """Arrivals from a column of timestamps (numbers in ``unit_s``, or datetimes)."""
    times = []
    for line, row in _rows(path):
        raw = row.get(column)
        if raw is None:
            raise TraceError(f"{path}:{line}: missing column {column!r}")
        try:
            t = float(raw) * unit_s
        except ValueError:
            try:
                t = dt.datetime.fromisoformat(raw[:26]).timestamp()
            except ValueError:
                raise TraceError(f"{path}:{line}: {column!r} is neither a number nor a timestamp: {raw!r}") from None
        times.append(t)
    if not times:
        raise TraceError(f"{path}: no rows")
    arr = np.sort(np.asarray(times))
    return Trace(name, arr - arr[0])


NOMINAL_PEAK_RPS = 20.0
"""Rate-only traces are normalised to this peak before arrivals are drawn (the shape is what
matters; ``scale_to_peak`` sets the real rate), so an Azure Functions trace of ~220M requests does
not become 220M arrival times."""


def load_rate_csv(path: Path, time_col: str, rate_col: str, window_s: float, name: str, seed: int, time_unit_s: float = 1.0,
                  filter_col: str | None = None, filter_value: str | None = None) -> Trace:
    """Poisson arrivals whose rate follows a per-window rate column (a rate-only trace)."""
    windows = []
    for line, row in _rows(path):
        if filter_col and row.get(filter_col) != filter_value:
            continue
        windows.append((_num(path, line, row, time_col) * time_unit_s, _num(path, line, row, rate_col)))
    if windows:
        peak = max(r for _, r in windows) or 1.0
        windows = [(t, r * NOMINAL_PEAK_RPS / peak) for t, r in windows]
    if not windows:
        raise TraceError(f"{path}: no rows" + (f" with {filter_col}={filter_value}" if filter_col else ""))
    windows.sort()
    rng = np.random.default_rng(seed)
    t0 = windows[0][0]
    out = []
    for start, rate in windows:
        n = rng.poisson(rate * window_s)
        out.append((start - t0) + np.sort(rng.uniform(0, window_s, n)))
    return Trace(name, np.concatenate(out))


@dataclasses.dataclass(frozen=True)
class TraceSource:
    """A bundled trace by name (``TRACES``), or a user's file read by ``orchestrator.sim.inputs``."""

    name: str
    time_column: str | None = None
    """CSV/TSV: the arrival-time column (default: timestamp, time, arrival_time, start_time, or the only column)."""
    time_unit: str = "s"
    """s, ms or us, for numeric times (ISO datetimes need none)."""
    time_field: str | None = None
    """JSON Lines: the arrival-time field (same defaults as the column)."""


@dataclasses.dataclass(frozen=True)
class PromptSource:
    """``world`` (the embedded world's stream with real reuse), ``world-heavy`` (mostly repeats), a bundled
    prompt set (``PROMPT_FILES``), or a user's file."""

    name: str = "world"
    column: str | None = None
    """CSV/TSV column or JSON Lines field of a user's file (default: prompt, Prompt, text, caption)."""


def source_name(source: str | TraceSource | PromptSource) -> str:
    """What a trace or prompt source is called in tables and JSON."""
    return source if isinstance(source, str) else source.name


def load_trace(source: str | TraceSource, seed: int = 0, root: Path = SHARED) -> Trace:
    """A bundled trace by name, or a user's trace file (CSV/TSV/JSON Lines, optionally gzip)."""
    src = source if isinstance(source, TraceSource) else TraceSource(source)
    name = src.name
    if name not in TRACES:
        from orchestrator.sim.inputs import read_arrivals

        return Trace(Path(name).name, read_arrivals(Path(name), src.time_column, src.time_unit, src.time_field))
    path = root / TRACES[name]
    if not path.exists():
        raise FileNotFoundError(f"trace file {path} not found (see ../shared/data/README.md)")
    if name == "twitter":
        return load_arrival_csv(path, "start_time", 1e-3, name)
    if name.startswith("azure"):
        return load_arrival_csv(path, "TIMESTAMP", 1.0, name)
    if name == "servegen-mm":
        return load_rate_csv(path, "timestamp", "total_rate", 600.0, name, seed, filter_col="model", filter_value="mm-image")
    if name == "maf":
        return load_rate_csv(path, "hour", "invocations", 3600.0, name, seed, time_unit_s=3600.0)
    raise ValueError(f"unknown trace {name!r}; known: {', '.join(TRACES)}")


def scale_to_peak(trace: Trace, target_peak_rps: float, duration_s: float | None = None, window_s: float = 1.0) -> Trace:
    """Compress time to ``duration_s`` (keeping the shape), then thin or replicate arrivals so the
    peak rate over ``window_s`` windows is ``target_peak_rps``. Deterministic."""
    if target_peak_rps <= 0:
        raise ValueError("target_peak_rps must be > 0")
    t = trace.arrivals_s.astype(np.float64)
    if duration_s is not None and trace.duration_s > 0:
        t = t * (duration_s / trace.duration_s)
    scaled = Trace(trace.name, t)
    factor = target_peak_rps / max(scaled.peak_rps(window_s), 1e-9)
    rng = np.random.default_rng(0)
    whole, frac = int(np.floor(factor)), factor - np.floor(factor)
    parts = [t] * whole + [t[rng.random(len(t)) < frac]]
    jitter = [np.zeros(len(p)) if i == 0 else rng.uniform(0, window_s / 10, len(p)) for i, p in enumerate(parts)]
    out = np.sort(np.concatenate([p + j for p, j in zip(parts, jitter)]))
    return Trace(f"{trace.name}@{target_peak_rps:g}rps", out)


def poisson(rate_rps: float, duration_s: float, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    return Trace(f"poisson{rate_rps:g}", np.sort(rng.uniform(0, duration_s, rng.poisson(rate_rps * duration_s))))


def on_off(low_rps: float, high_rps: float, period_s: float, duty: float, duration_s: float, seed: int = 0) -> Trace:
    """Bursts: ``high_rps`` for ``duty`` of every period, ``low_rps`` otherwise (Poisson within)."""
    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    while t < duration_s:
        for rate, length in ((high_rps, duty * period_s), (low_rps, (1 - duty) * period_s)):
            n = rng.poisson(rate * length)
            out.append(t + np.sort(rng.uniform(0, length, n)))
            t += length
    arr = np.concatenate(out)
    return Trace("on-off", arr[arr < duration_s])


def world_heavy_stream(n: int, seed: int = 0, templates: int = 300, zipf_a: float = 1.1, iterate_p: float = 0.3) -> list[str]:
    """The ``world-heavy`` preset (the default before real reuse was calibrated): popular templates
    (Zipf) and users iterating on their previous prompt (same scene, one colour changed). Mostly
    repeats: NIRVANA finds a K=25 source for nearly every request."""
    rng = random.Random(seed)
    pool = [sample_scene(rng) for _ in range(templates)]
    weights = np.array([1.0 / (i + 1) ** zipf_a for i in range(templates)])
    picks = np.random.default_rng(seed).choice(templates, size=n, p=weights / weights.sum())
    out, last = [], None
    for i in range(n):
        if last is not None and rng.random() < iterate_p:
            obj = last.objects[0]
            colors = ["red", "green", "blue", "yellow", "purple", "orange"]
            new = dataclasses.replace(obj, color=rng.choice([c for c in colors if c != obj.color and c != last.background]))
            scene = dataclasses.replace(last, objects=(new, *last.objects[1:]))
        else:
            scene = pool[picks[i]]
        out.append(scene.caption())
        last = scene
    return out


@dataclasses.dataclass(frozen=True)
class ReuseMix:
    """How each arrival of the ``world`` stream relates to earlier ones: an exact repeat, an edit (one
    or two kinds of attribute changed), or a fresh scene (the rest). The earlier prompt is drawn
    uniformly from the last ``window`` arrivals (users iterate on recent prompts). Exact repeats are
    about the reference's K=25 share and edits most of the rest; the cache thresholds are calibrated
    on this stream (``orchestrator.sim.reuse.calibrate``) so that NIRVANA's K mix under them matches
    the Argus authors' DiffusionDB log (``REFERENCE_K_MIX``)."""

    repeat: float = 0.06
    edit: float = 0.55
    two_attribute_edits: float = 0.3
    """Share of edits that change two kinds of attribute."""
    window: int = 200


REFERENCE_K_MIX = {0: 22.5, 5: 42.6, 10: 21.3, 15: 4.6, 20: 3.2, 25: 5.9}
"""NIRVANA's K shares (%) on 20,000 real DiffusionDB queries (../shared/data/reuse/README.md)."""


def world_prompt_stream(n: int, seed: int = 0, mix: ReuseMix = ReuseMix()) -> list[str]:
    """The ``world`` stream: repeats, edits and fresh scenes in ``mix``'s proportions (seeded). An edit or
    a fresh scene is a caption not seen before in the stream (redrawn a few times if it is: the world's
    grammar is small enough that chance alone would repeat a quarter of simple prompts), so exact
    repeats are the ``repeat`` share, as in a real log."""
    from tiny_model.gt_eval import DIFFERENCES, perturb

    rng = random.Random(seed)
    scenes: list = []
    seen: set[str] = set()
    kinds = [d for d in DIFFERENCES if d != "none"]

    def edit(earlier):
        scene = None
        for d in rng.sample(kinds, len(kinds)):
            scene = perturb(earlier, d, rng)
            if scene is not None and scene.caption() not in seen:
                break
        if scene is not None and rng.random() < mix.two_attribute_edits:
            for d in rng.sample(kinds, len(kinds)):
                second = perturb(scene, d, rng)
                if second is not None and second.caption() not in seen:
                    return second
        return scene

    for _ in range(n):
        u = rng.random()
        scene = None
        if scenes and u < mix.repeat + mix.edit:
            earlier = scenes[-1 - rng.randrange(min(mix.window, len(scenes)))]
            scene = earlier if u < mix.repeat else edit(earlier)
            if scene is not None and u >= mix.repeat and scene.caption() in seen:
                scene = None
        for _ in range(20):
            if scene is not None:
                break
            fresh = sample_scene(rng)
            scene = fresh if fresh.caption() not in seen else None
        scene = scene or sample_scene(rng)
        scenes.append(scene)
        seen.add(scene.caption())
    return [s.caption() for s in scenes]


WORLD_STREAMS = {"world": world_prompt_stream, "world-heavy": world_heavy_stream}
"""The world's named streams: ``world`` (the default: real reuse) and the ``world-heavy`` preset."""
WARM_PROMPTS = 1000
"""Prompts in the simulated cache before a stream starts (as in the reuse calibration)."""


PROMPT_FILES = {"diffusiondb": "prompts/diffusiondb_2m_first_5k_prompts.txt", "parti": "prompts/PartiPrompts.tsv",
                "drawbench": "prompts/drawbench.csv"}


def load_prompts(source: str | PromptSource, n: int, seed: int = 0, root: Path = SHARED) -> list[str]:
    """The prompt stream of ``n`` prompts: the world's (seeded), or drawn from a bundled set or a user's
    file uniformly with replacement under ``seed``. A file is never cycled (past its length every
    request would be an exact repeat of an earlier one), and each seed draws another order; a
    repeat happens as often as chance makes it."""
    src = source if isinstance(source, PromptSource) else PromptSource(source)
    if src.name in WORLD_STREAMS:
        return WORLD_STREAMS[src.name](n, seed=seed)
    if src.name in PROMPT_FILES:
        pool = real_prompts(src.name, root)
    else:
        from orchestrator.sim.inputs import read_prompts

        pool = read_prompts(Path(src.name), src.column)
    return [pool[i] for i in np.random.default_rng(seed).integers(0, len(pool), n)]


def real_prompts(name: str = "diffusiondb", root: Path = SHARED) -> list[str]:
    path = root / PROMPT_FILES[name]
    if name == "diffusiondb":
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [row["Prompt"] for _, row in _rows(path, "\t" if path.suffix == ".tsv" else ",") if row.get("Prompt", "").strip()]


@dataclasses.dataclass(frozen=True)
class Request:
    request_id: str
    arrival_s: float
    prompt: str
    seed: int
    slo_ms: float


def request_stream(trace: Trace, prompts: list[str], slo_ms: float, seed: int = 0) -> list[Request]:
    """The one request stream that both the live bench and the simulator replay: one prompt per
    arrival, never cycled (``load_prompts`` draws as many as there are arrivals)."""
    if len(prompts) < len(trace.arrivals_s):
        raise ValueError(f"{len(trace.arrivals_s)} arrivals but {len(prompts)} prompts: draw one prompt per arrival (load_prompts)")
    return [Request(f"r{i:06d}", float(t), prompts[i], seed + i, slo_ms) for i, t in enumerate(trace.arrivals_s)]
