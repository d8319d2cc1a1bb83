"""unet_fast: the code of ../../unet/1/model.py with this model's own config (written by orchestrator.triton.repository)."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("argus_unet_fast", Path(__file__).resolve().parents[2] / "unet" / "1" / "model.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
TritonPythonModel = _module.TritonPythonModel
