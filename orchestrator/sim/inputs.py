"""Bring-your-own inputs: an arrival trace and a prompt set from a user's files.

Traces: CSV/TSV (a time column in s, ms or us, or ISO datetimes) or JSON Lines (a time field);
prompts: plain text (one per line), CSV/TSV (a prompt column) or JSON Lines (a prompt field).
Any of them may be gzip-compressed (recognised by content, not by name). A file that cannot be
read raises ``InputFileError`` with one line naming the file and the row, never a traceback.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import math
from pathlib import Path

import numpy as np

TIME_UNITS_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
DEFAULT_TIME_NAMES = ("timestamp", "time", "arrival_time", "start_time", "time_s", "TIMESTAMP")
DEFAULT_PROMPT_NAMES = ("prompt", "Prompt", "text", "caption")


class InputFileError(ValueError):
    """A user's input file that cannot be read; the message is one line: file, row, reason."""


def _open_text(path: Path) -> io.TextIOBase:
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a file")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gz else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _kind(path: Path) -> str:
    """csv, tsv, jsonl or txt, from the name without a trailing .gz."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(last, "txt")


def _pick(path: Path, available: list[str], wanted: str | None, defaults: tuple[str, ...], flag: str) -> str:
    if wanted is not None:
        if wanted not in available:
            raise InputFileError(f"{path}: no column {wanted!r} (columns: {', '.join(available[:12])}); choose one with {flag}")
        return wanted
    for name in defaults:
        if name in available:
            return name
    if len(available) == 1:
        return available[0]
    raise InputFileError(f"{path}: which column? none of {', '.join(defaults)} (columns: {', '.join(available[:12])}); choose one with {flag}")


def _decode_lines(path: Path):
    """(line number, text) of a text file, with a one-line error for bad encoding or compression."""
    try:
        with _open_text(path) as f:
            for number, line in enumerate(f, start=1):
                yield number, line
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not UTF-8 text ({e.reason})") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputFileError(f"{path}: cannot be read: {e}") from None


def _csv_rows(path: Path, delimiter: str):
    """(line number, row dict, columns) of a CSV/TSV file."""
    try:
        with _open_text(path) as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            columns = list(reader.fieldnames or [])
            if not columns:
                raise InputFileError(f"{path}: empty file (no header row)")
            for row in reader:
                yield reader.line_num, row, columns
    except UnicodeDecodeError as e:
        raise InputFileError(f"{path}: not UTF-8 text ({e.reason})") from None
    except csv.Error as e:
        raise InputFileError(f"{path}: not valid CSV: {e}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise InputFileError(f"{path}: cannot be read: {e}") from None


def _jsonl_rows(path: Path):
    for number, line in _decode_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputFileError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise InputFileError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def _time_value(path: Path, line: int, name: str, raw, unit_s: float) -> float:
    if isinstance(raw, bool) or raw is None:
        raise InputFileError(f"{path}:{line}: {name!r} is missing or not a time: {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw) * unit_s
    else:
        text = str(raw).strip()
        try:
            value = float(text) * unit_s
        except ValueError:
            try:
                value = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise InputFileError(f"{path}:{line}: {name!r} is neither a number nor an ISO timestamp: {text[:40]!r}") from None
    if not math.isfinite(value):
        raise InputFileError(f"{path}:{line}: {name!r} is not finite: {raw!r}")
    return value


def read_arrivals(path: Path, time_column: str | None = None, time_unit: str = "s", time_field: str | None = None) -> np.ndarray:
    """Sorted arrival times in seconds from the first arrival."""
    path = Path(path)
    if time_unit not in TIME_UNITS_S:
        raise InputFileError(f"--time-unit must be one of {', '.join(TIME_UNITS_S)}, not {time_unit!r}")
    unit_s = TIME_UNITS_S[time_unit]
    times: list[float] = []
    if _kind(path) == "jsonl":
        name = None
        for line, obj in _jsonl_rows(path):
            if name is None:
                name = _pick(path, list(obj), time_field, DEFAULT_TIME_NAMES, "--time-field")
            if name not in obj:
                raise InputFileError(f"{path}:{line}: no field {name!r}")
            times.append(_time_value(path, line, name, obj[name], unit_s))
    else:
        name = None
        for line, row, columns in _csv_rows(path, "\t" if _kind(path) == "tsv" else ","):
            if name is None:
                name = _pick(path, columns, time_column, DEFAULT_TIME_NAMES, "--time-column")
            times.append(_time_value(path, line, name, row.get(name), unit_s))
    if not times:
        raise InputFileError(f"{path}: no rows")
    arr = np.sort(np.asarray(times, dtype=np.float64))
    return arr - arr[0]


def read_prompts(path: Path, prompt_column: str | None = None) -> list[str]:
    """Prompts in file order: one per line (text), a column (CSV/TSV) or a field (JSON Lines)."""
    path = Path(path)
    kind = _kind(path)
    out: list[str] = []
    if kind == "txt":
        out = [line.strip() for _, line in _decode_lines(path) if line.strip()]
    elif kind == "jsonl":
        name = None
        for line, obj in _jsonl_rows(path):
            if name is None:
                name = _pick(path, list(obj), prompt_column, DEFAULT_PROMPT_NAMES, "--prompt-column")
            value = obj.get(name)
            if not isinstance(value, str):
                raise InputFileError(f"{path}:{line}: {name!r} is not a string: {str(value)[:40]!r}")
            if value.strip():
                out.append(value.strip())
    else:
        name = None
        for _, row, columns in _csv_rows(path, "\t" if kind == "tsv" else ","):
            if name is None:
                name = _pick(path, columns, prompt_column, DEFAULT_PROMPT_NAMES, "--prompt-column")
            value = (row.get(name) or "").strip()
            if value:
                out.append(value)
    if not out:
        raise InputFileError(f"{path}: no prompts")
    return out
