"""Live and simulated runs share one control loop: the same request stream on the same virtual
clock, through the front door's engine (Triton faked) and through the simulator, gives identical
decisions and identical plan inputs, for every policy.

The simulator's event log (arrivals, control ticks, completions, in processing order) is replayed
through the engine's phases: ``admit``, ``featurize``, ``decide`` at each arrival, ``record`` at
each completion, ``control_tick`` at each tick. The fake Triton answers as the simulator's world
does (``TableWorld``: a prompt's embedding and cache similarities from the profile). The profile's
model load time is set to 0 here: CPU workers hold every model, so the front door switches a
worker's family without an outage, while the simulator would take it out of routing for the load.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from orchestrator.paths import CPU_PROFILE
from orchestrator.policy.base import PolicyContext
from orchestrator.policy.registry import make_policy, policy_names
from orchestrator.profile.schema import Profile
from orchestrator.serve.admission import Admitted
from orchestrator.serve.config import FrontDoorConfig
from orchestrator.serve.engine import Engine, Generated
from orchestrator.sim.simulator import SimConfig, Simulator
from orchestrator.sim.workload import on_off, request_stream, world_prompt_stream
from orchestrator.sim.world import TableWorld
from orchestrator.serve.workers import Probe


class FakeTriton:
    """The engine's Triton port, answering from the simulator's world."""

    def __init__(self, profile: Profile):
        self.world = TableWorld(profile)
        self.levels = sorted(profile.thresholds)
        self.view = None

    def probe(self, prompt, tenant):
        view = self.world.observe(prompt)
        sims = np.array([view.similarity[f"k{lv}"] for lv in self.levels], np.float32)
        return Probe(np.zeros((1, 24, 64), np.float32), view.embedding[None], view.embedding, np.zeros(len(sims), np.int64), sims, True)


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    data = json.loads(CPU_PROFILE.read_text())
    for v in data["variants"].values():
        v["load_time_s"] = 0.0
    path = tmp_path_factory.mktemp("parity") / "profile.json"
    path.write_text(json.dumps(data))
    return path


def assert_same_inputs(live, sim):
    for f in dataclasses.fields(live):
        a, b = getattr(live, f.name), getattr(sim, f.name)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        else:
            assert a == b, f.name


@pytest.mark.parametrize("policy", policy_names())
def test_engine_and_simulator_decide_identically(profile_path, policy):
    profile = Profile.load(profile_path)
    k0 = profile.variants["k0"]
    slo_ms = 2 * k0.latency_ms[1]
    capacity = k0.throughput(slo_ms)  # one worker's k0 capacity at the SLO
    trace = on_off(0.5 * capacity, 2.0 * capacity, period_s=15.0, duty=0.5, duration_s=45.0)  # bursts at 2x: the plan must act
    requests = request_stream(trace, world_prompt_stream(len(trace.arrivals_s)), slo_ms)
    sim = Simulator(profile, make_policy(policy, PolicyContext.build(profile, slo_ms)), SimConfig(1, max_batch=8))
    sim.run(requests)

    clock = [0.0]
    cfg = FrontDoorConfig(workers=["w0"], profile_path=profile_path, policy=policy, allow_unauthenticated=True, score_quality=False,
                          max_instances=0, default_slo_ms=slo_ms, metrics_port=None)
    engine = Engine(cfg, workers=FakeTriton(profile), clock=lambda: clock[0])
    by_id = {r.request_id: r for r in requests}
    booked: dict[str, tuple] = {}
    ticks = decisions = 0
    for ev in sim.log:
        clock[0] = ev.time_s
        if ev.kind == "arrival":
            r = by_id[ev.request_id]
            adm = engine.admit(Admitted(r.request_id, r.prompt, r.seed, r.slo_ms, None, r.arrival_s))
            feats = engine.featurize(adm)
            d = engine.decide(feats.features)
            assert d == ev.decision, f"{policy}: request {r.request_id} at {ev.time_s:.3f}s"
            decisions += 1
            if d.variant is None:
                engine.record(adm, d, None)
            else:
                booked[r.request_id] = (adm, d)
        elif ev.kind == "done":  # served: the engine learns the worker's slowdown from it, as the simulator does
            adm, d = booked.pop(ev.request_id)
            engine.record(adm, d, Generated(np.zeros((1, 32, 32, 3), np.uint8), d))
        else:
            step = engine.control_tick()
            assert_same_inputs(step.inputs, ev.step.inputs)
            assert step.switched == ev.step.switched
            assert (step.plan is None) == (ev.step.plan is None)
            if step.plan is not None:
                np.testing.assert_array_equal(step.plan.fractions, ev.step.plan.fractions)
            ticks += 1
    assert decisions == len(requests) and ticks > 10 and not booked and engine.in_flight == 0
    mix = {d.variant for d in (e.decision for e in sim.log if e.kind == "arrival")}
    if policy == "argus":  # the stream is hard enough to exercise the plan: approximations and k0 both occur
        assert "k0" in mix and len(mix - {"k0", None}) >= 1
