"""The policy and its tokenizer as a TRL trainer takes them, from an EKSFTConfig or RLConfig. Loading itself (folders,
hub names, ``.gguf`` files, ``tiny-random-llama``) is eksft.models.loading's; this module adds the config glue.
"""

from __future__ import annotations

from eksft.models.loading import check_model_source, is_special, load_causal_lm, load_tokenizer
from eksft.models.smollm import resolve_model_path


def training_tokenizer(path: str):
    """The tokenizer as training uses it: as saved (its own padding side and pad token; TRL's collator pads on the
    right), not generation's left padding."""
    return load_tokenizer(path, padding_side=None)


def check_model_sources(cfg) -> None:
    """``model_name_or_path`` and ``ref_model`` exist (or are aliases / reachable hub names): fails at once naming the
    field (eksft.models.loading.check_model_source) instead of after the hub client's retries."""
    for name in ("model_name_or_path", "ref_model"):
        check_model_source(getattr(cfg, name, None), f"{type(cfg).__name__}.{name}")


def policy_and_tokenizer(cfg):
    """``(model, tokenizer)`` to hand a TRL trainer, from ``cfg`` (an EKSFTConfig or an RLConfig). Callers run
    :func:`check_model_sources` first, before they read data (build_trainer, build_rl_trainer).

    The demo model's alias (also as ``ref_model``) becomes its converted folder in ``cfg``; folders and hub names go
    to TRL as strings (it loads them with ``model_init_kwargs``, ``dtype`` merged in); ``tiny-random-llama`` and
    ``.gguf`` files, which TRL cannot load from a string, are loaded here.
    """
    cfg.model_name_or_path = path = resolve_model_path(cfg.model_name_or_path)
    if getattr(cfg, "ref_model", None):
        cfg.ref_model = resolve_model_path(cfg.ref_model)
    tokenizer = training_tokenizer(path)
    if cfg.dtype != "auto":
        cfg.model_init_kwargs = {**(cfg.model_init_kwargs or {}), "dtype": cfg.dtype}
    if not is_special(path):
        return path, tokenizer
    model = load_causal_lm(path, **(cfg.model_init_kwargs or {}))
    cfg.model_init_kwargs = None
    return model, tokenizer
