"""The demo's tiny policy: a real ``transformers`` Llama model with a word-level task tokenizer.

The tokenizer is built from a task's vocabulary (``DemoTask.vocabulary()``) with the
``tokenizers`` library and wrapped as a ``PreTrainedTokenizerFast``, so it saves and loads with
the model like any Hugging Face checkpoint (``save_pretrained`` / ``AutoTokenizer``). Tokens are
whitespace-separated words: every number of the task is ONE token, which a 1M-parameter model
needs to learn arithmetic tables at all. Ids 0-2 are ``<pad>``, ``<eos>``, ``<unk>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


@dataclass(frozen=True)
class ModelSize:
    """Llama shape of the tiny policy (defaults: ~0.6M parameters with a 40-token vocabulary)."""

    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 256
    max_positions: int = 160


def build_tokenizer(vocabulary: list[str]):
    """A ``PreTrainedTokenizerFast`` over ``vocabulary`` (order kept, duplicates dropped)."""
    words = [PAD, EOS, UNK] + [w for w in dict.fromkeys(vocabulary) if w not in (PAD, EOS, UNK)]
    bad = [w for w in words if not w or any(ch.isspace() for ch in w)]
    if bad:
        raise ValueError(f"task vocabulary: tokens must be non-empty and contain no spaces: {bad!r}")
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Joining with single spaces makes decode(encode(text)) == text for canonical task texts.
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS,
                                   unk_token=UNK, padding_side="left", model_max_length=512)


def build_model(vocab_size: int, size: ModelSize | None = None, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` of ``size`` (tied embeddings, no dropout)."""
    size = size or ModelSize()
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=size.hidden, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, num_key_value_heads=size.heads,
        intermediate_size=size.intermediate, max_position_embeddings=size.max_positions,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=1,
        attention_dropout=0.0, rms_norm_eps=1e-6,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def n_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
