"""denoiser_k20: triton_backend.denoiser with this model's own config (written by orchestrator.triton.repository)."""

from triton_backend.denoiser import TritonPythonModel  # noqa: F401
