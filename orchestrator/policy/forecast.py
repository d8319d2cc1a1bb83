"""Load forecasting: Holt's linear smoothing of the arrival rate, with a burst detector.

Fed one rate sample per planning interval (requests seen / interval). Holt follows ramps; the
burst detector answers a sudden jump at once (the latest rate, when it exceeds the smoothed
level by ``burst_ratio``), because waiting for the smoother to catch up is how SLOs are lost.
The state is explicit, so the live planner and the simulator advance the same object.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class HoltForecaster:
    alpha: float = 0.5
    """Level smoothing (0..1): higher follows the latest rate faster."""
    beta: float = 0.2
    """Trend smoothing (0..1)."""
    burst_ratio: float = 1.5
    level_rps: float | None = None
    trend_rps_per_step: float = 0.0
    last_rps: float = 0.0
    bursting: bool = False

    def observe(self, rate_rps: float) -> None:
        if rate_rps < 0:
            raise ValueError(f"rate must be >= 0, got {rate_rps}")
        self.last_rps = rate_rps
        if self.level_rps is None:
            self.level_rps = rate_rps
            return
        self.bursting = rate_rps > self.burst_ratio * max(self.level_rps, 1e-9)
        prev = self.level_rps
        self.level_rps = self.alpha * rate_rps + (1 - self.alpha) * (self.level_rps + self.trend_rps_per_step)
        self.trend_rps_per_step = self.beta * (self.level_rps - prev) + (1 - self.beta) * self.trend_rps_per_step

    def forecast(self, steps_ahead: int = 1) -> float:
        """Expected rate ``steps_ahead`` intervals from now (never below 0)."""
        if self.level_rps is None:
            return 0.0
        smooth = max(0.0, self.level_rps + steps_ahead * self.trend_rps_per_step)
        return max(smooth, self.last_rps) if self.bursting else smooth
