"""The front door's dispatch gate: one variant's batch at a time per worker, first come first served.

Triton runs every loaded model's instances at once, so on one worker's cores a k25 or fast batch
routed after a k0 slows that k0 down, where the router and the simulator book a first-in
first-out worker. Live, without the gate, k0s admitted with 0.6 s estimates took 1.1-1.25 s in a
burst (``argus bench live``, README). With it, a worker runs what the router booked, in the order
it booked it: the head's variant and every queued request of it up to the largest batch that fits
the head's SLO (``router.next_batch``, as the simulator's worker) go to Triton together, where its
dynamic batcher joins them; the next batch starts when the last of them has answered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading

from orchestrator.policy.router import next_batch
from orchestrator.profile.schema import Profile


@dataclasses.dataclass
class _Ticket:
    variant: str
    slo_ms: float
    released: bool = False
    batch: int = 0
    """How many requests were dispatched together with it (itself included)."""


@dataclasses.dataclass
class _Worker:
    queue: list[_Ticket] = dataclasses.field(default_factory=list)
    running: int = 0


class DispatchGate:
    def __init__(self, profile: Profile, max_batch: int):
        self.profile = profile
        self.max_batch = max_batch
        self.cond = threading.Condition()
        self.workers: dict[str, _Worker] = {}

    @contextlib.contextmanager
    def turn(self, worker: str, variant: str, slo_ms: float):
        """Wait until this request's batch is dispatched on ``worker``, then yield that batch's size
        (what the live bench compares its generation time with); leaving the block (answer or
        error) ends its part of the batch."""
        ticket = _Ticket(variant, slo_ms)
        with self.cond:
            w = self.workers.setdefault(worker, _Worker())
            w.queue.append(ticket)
            self._dispatch(w)
            while not ticket.released:
                self.cond.wait()
        try:
            yield ticket.batch
        finally:
            with self.cond:
                w.running -= 1
                self._dispatch(w)

    def waiting(self, worker: str) -> int:
        with self.cond:
            return len(self.workers[worker].queue) if worker in self.workers else 0

    def _dispatch(self, w: _Worker) -> None:
        if w.running > 0 or not w.queue:
            return
        batch = [w.queue[i] for i in next_batch(self.profile, [(t.variant, t.slo_ms) for t in w.queue], self.max_batch)]
        for t in batch:
            t.released, t.batch = True, len(batch)
            w.queue.remove(t)
        w.running = len(batch)
        self.cond.notify_all()
