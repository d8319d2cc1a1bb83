"""text_encoder: prompt (BYTES) -> token ids -> CLIP hidden states + pooled projected embedding."""

from triton_backend.batching import decode_prompts, input_array, onnx_session, run_batched, set_threads
from tiny_model.models import load_clip, load_tokenizer
from tiny_model.pipeline import encode_prompts


class TritonPythonModel:
    def initialize(self, args):
        set_threads()
        self.tokenizer = load_tokenizer()
        self.session = onnx_session(args)  # token ids -> (hidden states, pooled), exported
        self.clip = None if self.session is not None else load_clip(tokenizer=self.tokenizer)

    def _parse(self, request):
        return {"prompts": decode_prompts(input_array(request, "PROMPT"))}

    def _compute(self, batch):
        if self.session is not None:
            hidden, pooled = self.session.run(["HIDDEN_STATES", "TEXT_EMBEDS"], {"INPUT_IDS": self.tokenizer(batch["prompts"])})
            return {"ENCODER_HIDDEN_STATES": hidden, "TEXT_EMBEDS": pooled}
        hidden, pooled = encode_prompts(self.clip, self.tokenizer, batch["prompts"])
        return {"ENCODER_HIDDEN_STATES": hidden.numpy(), "TEXT_EMBEDS": pooled.numpy()}

    def execute(self, requests):
        return run_batched(requests, self._parse, self._compute)
