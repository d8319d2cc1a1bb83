"""``argus eval-predictor``: the quality predictor's held-out error against predicting each
variant's mean, and how often its pick agrees with the oracle's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrator.policy.predictor import evaluate_predictor
from orchestrator.profile.schema import Profile


def run_predictor_eval(profile_path: Path, splits: int = 5, console=None) -> dict:
    prof = Profile.load(profile_path)
    runs = [evaluate_predictor(prof, seed=s) for s in range(splits)]
    out = {
        "splits": splits,
        "prompts": len(prof.quality.prompts),
        "mae_ratio_to_mean": float(np.mean([np.mean([r["mae"][v] / r["mae_of_mean_baseline"][v] for v in r["mae"]]) for r in runs])),
        "oracle_pick_agreement": float(np.mean([r["oracle_agreement"] for r in runs])),
        "mean_quality_regret": float(np.mean([r["mean_quality_regret"] for r in runs])),
    }
    if console:
        console.print(f"{splits} random 75/25 splits of {out['prompts']} prompts: held-out MAE / MAE of the mean = {out['mae_ratio_to_mean']:.3f}; "
                      f"oracle-pick agreement {out['oracle_pick_agreement']:.1%}; mean quality regret {out['mean_quality_regret']:.3f}")
    return out
