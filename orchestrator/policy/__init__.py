"""Decisions: the policy interface and registry, the baselines, the planned policies (planner,
router, quality predictor, prompt classes, forecaster) and the control loop. Pure functions of
their inputs; nothing here imports the serving, Triton or model code."""
