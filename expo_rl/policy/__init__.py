"""Policy I/O: load a causal LM + tokenizer, build prompts, sample, chunked completion log-probs."""

from expo_rl.policy.loading import load_policy
from expo_rl.policy.logprobs import (
    completion_logprobs,
    pack_sequences,
    reference_completion_logprobs,
    sequence_logprob_sums,
)
from expo_rl.policy.prompts import (
    DEFAULT_INSTRUCTION,
    build_prompt,
    chat_prompt,
    encode_prompt,
    messages_prompt,
)
from expo_rl.policy.sampling import SampleBatch, sample, stop_token_ids
from expo_rl.policy.tiny import load_tiny, load_tiny_tokenizer, tiny_model

__all__ = [
    "DEFAULT_INSTRUCTION", "SampleBatch", "build_prompt", "chat_prompt", "completion_logprobs",
    "encode_prompt", "load_policy", "messages_prompt", "load_tiny", "load_tiny_tokenizer", "pack_sequences", "reference_completion_logprobs",
    "sample", "sequence_logprob_sums", "stop_token_ids", "tiny_model",
]
