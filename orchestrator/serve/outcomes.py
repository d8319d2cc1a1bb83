"""What each request outcome is called in each protocol the front door speaks.

The engine raises one typed error per outcome; the gRPC, KServe HTTP and OpenAI fronts look the
status up here, so the same outcome never gets different answers depending on how it arrived.
"""

from __future__ import annotations

import dataclasses

from orchestrator.serve.admission import BadInput, Unauthenticated
from orchestrator.serve.engine import Draining, Overloaded, Shed, VariantTimeout, WorkerFailed


@dataclasses.dataclass(frozen=True)
class Outcome:
    grpc_code: str
    """grpc.StatusCode member name."""
    http_status: int
    openai_type: str
    """The ``error.type`` of OpenAI's error JSON."""
    retry_after_s: int | None = None
    """Sent as Retry-After (HTTP) / retry-after-ms (gRPC trailing metadata) when retrying later can succeed."""


OUTCOMES: dict[type[Exception], Outcome] = {
    BadInput: Outcome("INVALID_ARGUMENT", 400, "invalid_request_error"),
    Unauthenticated: Outcome("UNAUTHENTICATED", 401, "authentication_error"),
    Overloaded: Outcome("RESOURCE_EXHAUSTED", 429, "rate_limit_error", retry_after_s=1),
    Shed: Outcome("RESOURCE_EXHAUSTED", 429, "rate_limit_error", retry_after_s=1),
    Draining: Outcome("UNAVAILABLE", 503, "service_unavailable", retry_after_s=5),
    WorkerFailed: Outcome("UNAVAILABLE", 503, "server_error"),
    VariantTimeout: Outcome("DEADLINE_EXCEEDED", 504, "timeout"),
}


def outcome_of(error: Exception) -> Outcome | None:
    """The outcome of a typed front-door error; None for anything else (a bug: answered as 500)."""
    for cls in type(error).__mro__:
        if cls in OUTCOMES:
            return OUTCOMES[cls]
    return None
