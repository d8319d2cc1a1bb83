"""The front door's background loops, on the wall clock, each a thread around engine methods.

``ControlThread``  every plan interval: ``Engine.control_tick`` (the shared control loop); the
                   plan's denoiser instance counts go through Triton's model control from a
                   thread of their own, latest plan first, so a slow reload never delays a replan.
``HealthThread``   every health interval: workers that stop answering leave routing, owned
                   tritonservers that died are restarted with exponential backoff, timed-out
                   variants come back after their cooldown.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from orchestrator.serve.engine import Engine
from orchestrator.triton.control import desired_instances, set_instance_count

log = logging.getLogger("argus.frontdoor")


class ControlThread(threading.Thread):
    def __init__(self, engine: Engine):
        super().__init__(daemon=True, name="argus-control")
        self.engine = engine
        self.pending = None
        """The latest plan whose instance counts are not applied yet (an older one is dropped)."""
        self.cond = threading.Condition()
        self.applier = threading.Thread(target=self._apply_loop, daemon=True, name="argus-instances")

    def run(self) -> None:
        """Replan every interval. A Triton reload (new instance counts) can take seconds on a busy
        worker; applied inline, it held the control loop, and under a burst no plan followed the
        load until it finished."""
        eng = self.engine
        self.applier.start()
        while not eng.stop.wait(eng.plan_interval_s):
            step = eng.control_tick()
            if step is not None and step.plan is not None and eng.cfg.max_instances:
                with self.cond:
                    self.pending = (step.plan, step.inputs.class_mix)
                    self.cond.notify()
        with self.cond:
            self.cond.notify()

    def _apply_loop(self) -> None:
        eng = self.engine
        while not eng.stop.is_set():
            with self.cond:
                while self.pending is None and not eng.stop.is_set():
                    self.cond.wait(0.5)
                job, self.pending = self.pending, None
            if job is not None and not eng.stop.is_set():
                apply_instances(eng, *job)


def apply_instances(eng: Engine, plan, mix: np.ndarray) -> None:
    """Instance counts per worker through Triton's model control (full-config override)."""
    if plan.fractions.shape[0] != len(mix):  # a prompt-agnostic plan has one class
        mix = np.ones(plan.fractions.shape[0]) / plan.fractions.shape[0]
    for worker, family in eng.families().items():
        client = eng.workers.client(worker)
        for model, count in desired_instances(family, plan.variants, plan.fractions, mix, eng.cfg.max_instances).items():
            if eng.stop.is_set():  # closing: the workers may already be going down (the demo's shutdown warned once per model)
                return
            try:
                if client.is_model_ready(model) and set_instance_count(client, model, count):
                    log.info("worker %s: %s -> %d instances", worker, model, count)
                    eng.metrics.instance_changes.labels(model=model, count=str(count)).inc()
                eng.metrics.instances.labels(worker=worker, model=model).set(count)
            except Exception as e:  # noqa: BLE001 - a failed override keeps the old instances serving
                log.warning("worker %s: cannot set %s to %d instances: %s", worker, model, count, e)


class HealthThread(threading.Thread):
    def __init__(self, engine: Engine, servers: dict | None = None):
        """``servers``: worker url -> TritonServer this process owns (restarted when it dies)."""
        super().__init__(daemon=True, name="argus-health")
        self.engine = engine
        self.servers = dict(servers or {})
        self.backoff = {w: 1.0 for w in engine.cfg.workers}
        self.next_try = {w: 0.0 for w in engine.cfg.workers}
        self.restarting: set[str] = set()

    def run(self) -> None:
        eng = self.engine
        while not eng.stop.wait(eng.cfg.health_interval_s):
            eng.enable_cooled_variants()
            now = time.monotonic()
            for w in eng.cfg.workers:
                if w in self.restarting:
                    continue
                server = self.servers.get(w)
                dead = server is not None and server.proc is not None and server.proc.poll() is not None
                ready = not dead and eng.workers.ready(w, fresh_channel=not eng.is_healthy(w))
                eng.set_healthy(w, ready)
                if dead and now >= self.next_try[w]:
                    self.restarting.add(w)
                    self.next_try[w] = now + self.backoff[w]
                    self.backoff[w] = min(2 * self.backoff[w], 30.0)
                    threading.Thread(target=self._restart, args=(w, server), daemon=True).start()

    def _restart(self, worker: str, server) -> None:
        log.warning("worker %s: tritonserver died (exit %s); restarting", worker, server.proc.returncode)
        try:
            server.stop()
            server.start(wait=True)  # loads the configured models; the control loop re-applies instance counts
            self.engine.metrics.worker_restarts.labels(worker=worker).inc()
            self.backoff[worker] = 1.0
            log.info("worker %s: restarted and ready", worker)
        except Exception as e:  # noqa: BLE001 - retried by the health loop after the backoff
            log.error("worker %s: restart failed: %s", worker, e)
        finally:
            self.restarting.discard(worker)
