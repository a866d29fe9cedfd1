"""Rebuild the small byte-level BPE tokenizer shipped in ``expo_rl/assets/tiny_tokenizer``.

Tiny random models (tests, benchmarks, ``--model tiny:qwen2``) need a tokenizer that exists
without a hub download. This one is trained on the shared MATH and GSM8K text so that token
counts of real math text are realistic (a few characters per token).

    python scripts/build_tiny_tokenizer.py [--data ../shared/data] [--vocab 2048]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def iter_texts(data_dir: Path):
    for path in [data_dir / "math" / "train.jsonl", data_dir / "gsm8k" / "train.jsonl"]:
        with path.open() as handle:
            for line in handle:
                row = json.loads(line)
                yield " ".join(str(v) for v in row.values() if isinstance(v, str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "expo_rl" / "assets" / "tiny_tokenizer")
    args = parser.parse_args()

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(iter_texts(args.data), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    fast.chat_template = CHATML_TEMPLATE
    args.out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(args.out)
    print(f"saved {len(fast)} tokens to {args.out}")


if __name__ == "__main__":
    main()
