"""Validation of text inputs, shared by the front door and the Triton models, so the same bad
input gets the same answer wherever it arrives."""

from __future__ import annotations

MAX_PROMPT_BYTES = 2048
"""Longest prompt accepted (UTF-8 bytes); the tokenizer truncates far earlier, so longer is abuse."""
MAX_TENANT_BYTES = 128


class InvalidText(ValueError):
    """A text input the client must fix (answered with INVALID_ARGUMENT)."""


def decode_text(item: bytes | str, name: str, max_bytes: int, printable: bool = False) -> str:
    """One BYTES element -> str: within ``max_bytes``, valid UTF-8, not blank; with ``printable``
    no control characters at all, otherwise none but tab and newlines."""
    data = item if isinstance(item, bytes) else str(item).encode()
    if len(data) > max_bytes:
        raise InvalidText(f"{name} is {len(data)} bytes; the limit is {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidText(f"{name} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise InvalidText(f"{name} is empty")
    bad = (not text.isprintable()) if printable else any(ord(ch) < 32 and ch not in "\t\n\r" for ch in text)
    if bad:
        raise InvalidText(f"{name} contains control characters")
    return text
