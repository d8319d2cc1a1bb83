"""The front door's dispatch gate runs a worker as the simulator does: one variant's batch at a
time, first come first served, the head's variant with every queued request of it."""

from __future__ import annotations

import threading
import time

from orchestrator.paths import CPU_PROFILE
from orchestrator.policy.router import next_batch
from orchestrator.profile.schema import Profile
from orchestrator.serve.dispatch import DispatchGate


def test_next_batch_is_the_heads_variant_up_to_the_batch_that_fits_its_slo():
    prof = Profile.load(CPU_PROFILE)
    queued = [("k25", 5000.0), ("k0", 5000.0), ("k25", 5000.0), ("fast", 5000.0), ("k25", 5000.0)]
    assert next_batch(prof, queued, 8) == [0, 2, 4]
    assert next_batch(prof, queued, 2) == [0, 2]
    tight = prof.variants["k25"].batch_latency_ms(1) * 1.01  # only a batch of one fits this SLO
    assert next_batch(prof, [("k25", tight), ("k25", 5000.0)], 8) == [0]
    assert next_batch(prof, [], 8) == []


def test_the_gate_runs_one_batch_at_a_time_in_arrival_order():
    """A k0 runs; a k25, a k0 and a k25 queue behind it. When the k0 answers, both k25s go together
    (the head's variant), then the k0; never two variants at once on the worker."""
    gate = DispatchGate(Profile.load(CPU_PROFILE), max_batch=8)
    running, log, lock, batches = [], [], threading.Lock(), {}
    release = {name: threading.Event() for name in ("a", "b", "c", "d")}

    def request(name, variant):
        with gate.turn("w0", variant, 5000.0) as batch:
            batches[name] = batch
            with lock:
                running.append(variant)
                log.append((name, tuple(sorted(set(running)))))
            release[name].wait(5)
            with lock:
                running.remove(variant)

    threads = {"a": threading.Thread(target=request, args=("a", "k0"))}
    threads["a"].start()
    time.sleep(0.05)
    for name, variant in (("b", "k25"), ("c", "k0"), ("d", "k25")):
        threads[name] = threading.Thread(target=request, args=(name, variant))
        threads[name].start()
        time.sleep(0.05)
    assert [n for n, _ in log] == ["a"] and gate.waiting("w0") == 3
    release["a"].set()
    time.sleep(0.1)
    assert sorted(n for n, _ in log) == ["a", "b", "d"] and gate.waiting("w0") == 1
    release["b"].set()
    time.sleep(0.1)
    assert "c" not in [n for n, _ in log]  # d still runs: its batch is not over
    release["d"].set()
    release["c"].set()
    for t in threads.values():
        t.join(5)
    assert [n for n, _ in log][-1] == "c" and all(len(variants) == 1 for _, variants in log)
    assert batches == {"a": 1, "b": 2, "d": 2, "c": 1}  # each learns the size of the batch it went in
    assert gate.waiting("w0") == 0


def test_an_error_ends_a_requests_turn():
    gate = DispatchGate(Profile.load(CPU_PROFILE), max_batch=8)
    try:
        with gate.turn("w0", "k0", 5000.0):
            raise RuntimeError("worker failed")
    except RuntimeError:
        pass
    done = threading.Event()
    threading.Thread(target=lambda: (gate.turn("w0", "k25", 5000.0).__enter__(), done.set())).start()
    assert done.wait(2)
