"""The control loop, one for the live front door and the simulator.

Every plan interval, ``ControlLoop.tick`` turns the cluster state into the planner's input and
applies the plan:

    measure   arrivals since the last tick -> rate -> Holt forecast of the next interval
    snapshot  ClusterState -> ControlInput: forecast demand, class mix of the decayed arrivals,
              workers per family, observed cache availability, the plan interval
    plan      policy.replan(ControlInput) -> Plan (None for static policies)
    apply     assign_families: new family per worker, moving as few as possible; age the arrivals

It touches nothing but the state and the policy, so the front door calls it from a thread on the
wall clock and the simulator from its event queue on a virtual clock, and both decide identically
(``tests/unit/test_parity.py``). What the caller does with a switched worker (load the model,
set instance counts; in simulation, take it out of routing for the load time) stays with it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from orchestrator.policy.forecast import HoltForecaster
from orchestrator.policy.planner import Plan
from orchestrator.policy.router import ClusterState, assign_families


@dataclasses.dataclass(frozen=True)
class ControlInput:
    """What a policy plans from; the same fields live and in simulation."""

    demand_rps: float
    """Forecast arrival rate for the next interval."""
    class_mix: np.ndarray
    """(classes,) share of recent arrivals per prompt class (ClusterState's decayed counts)."""
    num_workers: int
    previous_families: dict[str, int] | None
    """Workers per model family before this plan (moving one may load a model); None: no previous
    allocation, switches are not priced (a first plan, or the planner timed alone)."""
    observed_availability: np.ndarray
    """(classes, variants) fraction of recent arrivals that found each variant available; NaN where unseen."""
    plan_interval_s: float
    """The horizon a model switch's outage is weighed against."""


@dataclasses.dataclass(frozen=True)
class ControlStep:
    inputs: ControlInput
    plan: Plan | None
    switched: tuple[int, ...]
    """Indices of the workers whose model family this step changed."""


class ControlLoop:
    """Owns the forecaster and the arrival count between ticks; the policy owns the plan."""

    def __init__(self, policy, plan_interval_s: float, start_s: float = 0.0, forecaster: HoltForecaster | None = None):
        if plan_interval_s <= 0:
            raise ValueError(f"plan_interval_s must be > 0, got {plan_interval_s}")
        self.policy = policy
        self.plan_interval_s = plan_interval_s
        self.forecaster = forecaster or HoltForecaster()
        self.arrivals = 0
        self.last_tick_s = start_s

    def count_arrival(self) -> None:
        """Every request that reached the door counts towards demand, admitted or not."""
        self.arrivals += 1

    def tick(self, state: ClusterState, now_s: float) -> ControlStep:
        """One control step (the caller holds any lock on ``state``)."""
        self.forecaster.observe(self.arrivals / max(now_s - self.last_tick_s, 1e-6))
        self.arrivals, self.last_tick_s = 0, now_s
        inp = ControlInput(
            demand_rps=self.forecaster.forecast(1),
            class_mix=state.class_mix(),
            num_workers=len(state.workers),
            previous_families=state.family_counts(),
            observed_availability=state.observed_availability(),
            plan_interval_s=self.plan_interval_s,
        )
        state.decay()
        plan = self.policy.replan(inp)
        switched: list[int] = []
        if plan is not None:
            for i, (w, fam) in enumerate(zip(state.workers, assign_families([w.family for w in state.workers], plan.workers,
                                                                                [w.backlog_s for w in state.workers]))):
                if fam != w.family:
                    w.family = fam
                    switched.append(i)
        return ControlStep(inp, plan, tuple(switched))
