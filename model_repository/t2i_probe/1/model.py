"""t2i_probe: triton_backend.probe with this model's own config (written by orchestrator.triton.repository)."""

from triton_backend.probe import TritonPythonModel  # noqa: F401
