"""An exported graph served by the Python backend through onnxruntime.

For servers without the onnxruntime backend (the pip wheel's tritonserver has only the Python
backend). Runs ``model.onnx`` next to this file; input and output names come from the model's
config, so one file serves every exported part. CUDA is used when onnxruntime-gpu finds a GPU.
"""

import json
import os
from pathlib import Path

from orchestrator.triton.backend import input_array, run_batched


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        cfg = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in cfg["input"]]
        self.outputs = [t["name"] for t in cfg["output"]]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("ARGUS_TORCH_THREADS", "1"))
        opts.inter_op_num_threads = 1
        wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in wanted if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(Path(__file__).resolve().parent / "model.onnx"), opts, providers=providers)

    def _parse(self, request):
        return {name: input_array(request, name) for name in self.inputs}

    def _compute(self, batch):
        return dict(zip(self.outputs, self.session.run(self.outputs, batch)))

    def execute(self, requests):
        return run_batched(requests, self._parse, self._compute)
