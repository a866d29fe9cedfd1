"""Prompt building with and without a chat template."""

from __future__ import annotations

import copy

import pytest

from expo_rl.policy import (
    DEFAULT_INSTRUCTION,
    build_prompt,
    chat_prompt,
    encode_prompt,
    load_tiny_tokenizer,
)


@pytest.fixture(scope="module")
def tok():
    return load_tiny_tokenizer()


@pytest.fixture(scope="module")
def plain_tok(tok):
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    return plain


def test_instruction_is_the_papers_zero_shot_prompt():
    assert "step by step" in DEFAULT_INSTRUCTION and "\\boxed{}" in DEFAULT_INSTRUCTION


def test_chat_template_prompt(tok):
    prompt = build_prompt(tok, "What is 1+1?")
    assert prompt == f"<|im_start|>user\nWhat is 1+1?\n\n{DEFAULT_INSTRUCTION}<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(encode_prompt(tok, prompt)) == prompt


def test_plain_template_prompt(plain_tok):
    assert build_prompt(plain_tok, "  What is 1+1? ") == f"What is 1+1?\n\n{DEFAULT_INSTRUCTION}\n\nAnswer:"
    assert build_prompt(plain_tok, "Q", instruction="Be brief.", system="You are a tutor.") == \
        "You are a tutor.\n\nQ\n\nBe brief.\n\nAnswer:"


def test_custom_and_missing_instruction(tok):
    assert "<|im_start|>user\nQ\n\nExplain.<|im_end|>" in build_prompt(tok, "Q", instruction="Explain.")
    assert "<|im_start|>user\nQ<|im_end|>" in build_prompt(tok, "Q", instruction=None)
    assert "<|im_start|>user\nQ<|im_end|>" in build_prompt(tok, "Q", instruction="  ")


def test_chat_prompt_arbitrary_text_and_system(tok):
    hinted = "Problem: 2+2\nThe answer is 4. Explain why."
    prompt = chat_prompt(tok, hinted, system="Be rigorous.")
    assert prompt.startswith("<|im_start|>system\nBe rigorous.<|im_end|>\n<|im_start|>user\n" + hinted)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_empty_question_is_an_error(tok):
    with pytest.raises(ValueError, match="empty question"):
        build_prompt(tok, "   ")
