"""denoiser_k15: the code of ../../denoiser/1/model.py with this model's own config (written by orchestrator.triton.repository)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("argus_denoiser_k15", Path(__file__).resolve().parents[2] / "denoiser" / "1" / "model.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
TritonPythonModel = _module.TritonPythonModel
