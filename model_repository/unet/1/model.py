"""unet: triton_backend.unet with this model's own config (written by orchestrator.triton.repository)."""

from triton_backend.unet import TritonPythonModel  # noqa: F401
