"""text_encoder of a built repository: prompt -> token ids (per tower) -> the exported encoders.

Tokenizes with the ``tokenizers`` JSON files next to this file (``tokenizers.json`` lists them
with their special ids), calls each tower's engine model through BLS (``text_encoder_engine``,
``text_encoder_2_engine``: ONNX, TensorRT or the onnxruntime runner), and concatenates their hidden
states as SD-XL does; the pooled embedding is the projecting tower's.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from build_engines.tokenize import TowerTokenizer
from triton_backend.batching import decode_prompts, input_array, run_batched


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(__file__).resolve().parent
        self.towers = [(t["engine"], t["pooled"], TowerTokenizer((folder / t["file"]).read_text(encoding="utf-8"), t["token_len"], t["special_ids"]))
                       for t in json.loads((folder / "tokenizers.json").read_text(encoding="utf-8"))]

    def _parse(self, request):
        return {"prompts": decode_prompts(input_array(request, "PROMPT"))}

    def _run(self, engine, ids, pooled):
        names = ["HIDDEN_STATES"] + (["TEXT_EMBEDS"] if pooled else [])
        req = pb_utils.InferenceRequest(model_name=engine, requested_output_names=names, inputs=[pb_utils.Tensor("INPUT_IDS", ids)])
        resp = req.exec()
        if resp.has_error():
            raise RuntimeError(f"{engine}: {resp.error().message()}")
        return [pb_utils.get_output_tensor_by_name(resp, n).as_numpy() for n in names]

    def _compute(self, batch):
        hidden, text_embeds = [], None
        for engine, pooled, tokenize in self.towers:
            outs = self._run(engine, tokenize(batch["prompts"]), pooled)
            hidden.append(outs[0].astype(np.float32))
            if pooled:
                text_embeds = outs[1].astype(np.float32)
        return {"ENCODER_HIDDEN_STATES": np.concatenate(hidden, axis=-1), "TEXT_EMBEDS": text_embeds}

    def execute(self, requests):
        return run_batched(requests, self._parse, self._compute)
