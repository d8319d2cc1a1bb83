"""An exported graph served by the Python backend through onnxruntime.

For servers without the onnxruntime backend (the pip wheel's tritonserver has only the Python
backend). Runs ``model.onnx`` next to this file; input and output names come from the model's
config, so one file serves every exported part. CUDA is used when onnxruntime-gpu finds a GPU.
"""

import json
from pathlib import Path

from triton_backend.ort import instance_threads, ort_session
from triton_backend.batching import input_array, run_batched


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in cfg["input"]]
        self.outputs = [t["name"] for t in cfg["output"]]
        self.session = ort_session(Path(__file__).resolve().parent / "model.onnx", instance_threads(), cuda=True)

    def _parse(self, request):
        return {name: input_array(request, name) for name in self.inputs}

    def _compute(self, batch):
        return dict(zip(self.outputs, self.session.run(self.outputs, batch)))

    def execute(self, requests):
        return run_batched(requests, self._parse, self._compute)
