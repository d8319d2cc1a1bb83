"""t2i_probe: everything the front door needs to decide, in one call.

PROMPT (+ optional TENANT) -> the text encoder's hidden states and pooled embedding (which the
generation then takes, so the prompt is encoded once) and the cache's best candidate per K (entry
id and similarity), with the other sources per K it may rank (``CANDIDATE_*``). CACHE_OK is 0 when the cache did not answer within its budget: the front door
then serves k0, without an error.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from triton_backend.batching import BadRequest, decode_prompts, decode_tenants, error_response, input_array
from triton_backend.cache_link import CacheLink


class TritonPythonModel:
    def initialize(self, args):
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.levels = int(params["NUM_CACHED_LEVELS"])
        self.candidates = int(params["CANDIDATES"])
        self.dim = int(params["EMBEDDING_DIM"])
        self.cache = CacheLink.from_params(params)

    def _parse(self, request):
        prompts = decode_prompts(input_array(request, "PROMPT"))
        tenants = decode_tenants(request, "TENANT", len(prompts), empty_is_default=False)
        return prompts, [""] * len(prompts) if tenants is None else tenants

    def _encode(self, prompts):
        req = pb_utils.InferenceRequest(model_name="text_encoder", requested_output_names=["ENCODER_HIDDEN_STATES", "TEXT_EMBEDS"],
                                        inputs=[pb_utils.Tensor("PROMPT", np.array([p.encode() for p in prompts], dtype=np.object_).reshape(-1, 1))])
        resp = req.exec()
        if resp.has_error():
            raise RuntimeError(f"text_encoder: {resp.error().message()}")
        return (pb_utils.get_output_tensor_by_name(resp, "ENCODER_HIDDEN_STATES").as_numpy(),
                pb_utils.get_output_tensor_by_name(resp, "TEXT_EMBEDS").as_numpy())

    def execute(self, requests):
        parsed, responses = [], [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                parsed.append((i, *self._parse(request)))
            except BadRequest as e:
                responses[i] = error_response(str(e))
        if parsed:
            prompts = [p for _, ps, _ in parsed for p in ps]
            tenants = [t for _, _, ts in parsed for t in ts]
            try:
                hidden, pooled = self._encode(prompts)
            except Exception as e:  # noqa: BLE001 - answer every request, never crash the instance
                for i, _, _ in parsed:
                    responses[i] = error_response(f"{type(e).__name__}: {e}", invalid=False)
                return responses
            got = self.cache.lookup(pooled, tenants)
            n = len(prompts)
            if got is None:  # no cache: nothing to resume from
                got = {"ENTRY_IDS": np.full((n, self.levels), -1, np.int64), "SIMILARITY": np.full((n, self.levels), -1.0, np.float32),
                       "CANDIDATE_IDS": np.full((n, self.levels, self.candidates), -1, np.int64),
                       "CANDIDATE_SIMILARITY": np.full((n, self.levels, self.candidates), -1.0, np.float32),
                       "CANDIDATE_EMBEDS": np.zeros((n, self.levels, self.candidates, self.dim), np.float32)}
                ok = np.zeros((n, 1), bool)
            else:
                ok = np.ones((n, 1), bool)
            start = 0
            for i, ps, _ in parsed:
                sl = slice(start, start + len(ps))
                start += len(ps)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("ENCODER_HIDDEN_STATES", np.ascontiguousarray(hidden[sl])),
                    pb_utils.Tensor("TEXT_EMBEDS", np.ascontiguousarray(pooled[sl])),
                    pb_utils.Tensor("CACHE_OK", ok[sl]),
                    *[pb_utils.Tensor(name, np.ascontiguousarray(got[name][sl])) for name in CacheLink.LOOKUP_OUTPUTS],
                ])
        return responses
