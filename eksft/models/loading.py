"""Load a causal LM and its tokenizer from a local folder, a hub name, a ``.gguf`` file or a built-in alias: the one
loader of eksft.

Sources: a ``save_pretrained`` folder (opened with ``local_files_only``), a hub name, a ``.gguf`` file (its folder plus
``gguf_file``), ``tiny-random-llama`` (:mod:`eksft.models.tiny`, always the seed-0 model) and
``smollm2-135m-instruct`` (:func:`eksft.models.smollm.resolve_model_path`, the converted GGUF). Generation (``eksft
eval``, ``probe``, the demo) goes through :func:`load_model_and_tokenizer` / :func:`load_model`: eval mode, on a
device. Training (eksft.jobs.policy) goes through :func:`load_causal_lm` (TRL's dtype and device handling). Both
take their tokenizer from :func:`load_tokenizer`, whose ``padding_side`` is the one difference: ``"left"`` for
generation, ``None`` (as saved) for training.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from . import tiny
from .smollm import load_gguf, resolve_model_path

DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype):
    """``"auto"`` (the checkpoint's own dtype), a name from :data:`DTYPES`, or a ``torch.dtype``."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; choose one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


#: names that mean a built-in model, not a path or hub name (eksft.models.tiny, eksft.models.smollm)
ALIASES = ("tiny-random-llama", "smollm2-135m-instruct", "smollm2")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_like_path(value: str) -> bool:
    """A value meant as a local path: starts with ``.``, ``~`` or ``/``, ends in ``.gguf``, has a backslash or more
    than one ``/``, is no valid hub name, or its first part is an existing local folder (``models/x``)."""
    v = str(value)
    return (
        v.startswith((".", "~", "/"))
        or v.endswith(".gguf")
        or "\\" in v
        or v.count("/") > 1
        or not HUB_ID.match(v)
        or ("/" in v and os.path.isdir(v.split("/")[0]))
    )


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached, found within seconds (offline flags, one connection attempt), or None."""
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{flag}={os.environ[flag]}"
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # through a proxy: let the hub client try
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=3).close()
    except OSError as e:
        return f"no connection to {url.hostname}: {e.strerror or e}"
    return None


def _cached_on_hub(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 (an invalid name or cache layout: not cached)
        return False


def check_model_source(value, field: str = "model") -> None:
    """Fail at once, naming ``field`` and ``value``, when a model cannot be found: a path (looks_like_path) that does
    not exist, a near-miss of a built-in alias, or a hub name while the hub is unreachable and it is not cached.
    Anything else (an existing path, an alias, a reachable or cached hub name) passes."""
    if value is None:
        return
    v = str(value)
    if v.lower() in ALIASES or os.path.exists(os.path.expanduser(v)):
        return
    near = difflib.get_close_matches(v.lower(), ALIASES, n=1, cutoff=0.7)
    if near and "/" not in v:
        raise ValueError(f"{field}={v!r} is not a local path or a built-in model; did you mean {near[0]!r}?")
    if looks_like_path(v):
        raise FileNotFoundError(
            f"{field}={v!r}: no such file or folder ({os.path.abspath(os.path.expanduser(v))}); "
            "give an existing model folder or .gguf file, a hub name, or "
            f"{' / '.join(repr(a) for a in ALIASES[:2])}."
        )
    if _cached_on_hub(v):
        return
    reason = hub_unreachable()
    if reason:
        raise ValueError(
            f"{field}={v!r} is not a local path, and as a hub model name it needs the hub, which is "
            f"unreachable ({reason}); download it once while online or give a local folder."
        )


def is_special(name_or_path) -> bool:
    """``tiny-random-llama`` or a ``.gguf`` file: sources TRL cannot load from a string (training loads them with
    :func:`load_causal_lm` and hands TRL the model)."""
    path = str(name_or_path)
    return path == tiny.NAME or path.endswith(".gguf")


def _source(name_or_path, gguf_file):
    """``(folder or hub name, from_pretrained kwargs, kind for error messages)``, after checking the source exists
    (:func:`check_model_source`). A ``.gguf`` file path becomes its folder plus ``gguf_file``; a local folder is
    opened with ``local_files_only`` so a missing file fails at once instead of trying the network."""
    check_model_source(name_or_path, "model")
    if gguf_file is None and str(name_or_path).endswith(".gguf"):
        name_or_path, gguf_file = os.path.dirname(name_or_path) or ".", os.path.basename(name_or_path)
    local = Path(name_or_path).is_dir()
    if not local and Path(name_or_path).exists():
        raise ValueError(f"{name_or_path} is a file, not a model folder; pass its folder (and gguf_file for GGUF)")
    kwargs = {"local_files_only": True} if local else {}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return name_or_path, kwargs, ("local folder" if local else "hub name (is the hub reachable?)")


def load_model(
    name_or_path: str | os.PathLike, *, dtype="auto", device: str | None = None, gguf_file: str | None = None
):
    """The model alone, in eval mode on ``device`` (see :func:`load_model_and_tokenizer` for the arguments)."""
    name_or_path = resolve_model_path(name_or_path)
    if name_or_path == tiny.NAME:
        model, _ = tiny.tiny_random_llama(seed=0)
        if resolve_dtype(dtype) != "auto":
            model.to(resolve_dtype(dtype))
        return model.to(device or default_device()).eval()
    from transformers import AutoModelForCausalLM

    source, kwargs, kind = _source(name_or_path, gguf_file)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(dtype), **kwargs)
    except OSError as err:
        raise OSError(f"could not load model {name_or_path!s} as a {kind}: {err}") from err
    return model.to(device or default_device()).eval()


def load_causal_lm(path: str, **kwargs):
    """The policy or reference for training: ``from_pretrained`` through TRL's ``create_model_from_path`` (its dtype
    and ``device_map`` handling; ``kwargs`` are ``model_init_kwargs``). ``tiny-random-llama`` is always the seed-0
    model, so reloading it (the reference, a resumed run) gives the same starting weights; a ``.gguf`` file is
    dequantised and its quantizer dropped, so the trained model saves as an ordinary checkpoint."""
    path = resolve_model_path(path)
    if path == tiny.NAME:
        model, _ = tiny.tiny_random_llama(seed=0)
        return model
    if path.endswith(".gguf"):
        return load_gguf(path, **kwargs)
    from trl.trainer.utils import create_model_from_path

    return create_model_from_path(path, **kwargs)


def load_tokenizer(name_or_path: str | os.PathLike, *, gguf_file: str | None = None, padding_side: str | None = "left"):
    """The tokenizer of a folder, hub name, ``.gguf`` file or ``tiny-random-llama``.

    ``padding_side`` is the caller's convention, the one difference between generation and training:
    ``"left"`` (the default; eval, probe, the demo) for batched generation, where new tokens must follow the prompt
    directly, and the tokenizer gets a pad token (its eos token) when it has none; ``None`` (training) keeps the
    tokenizer as saved, its own padding side and pad token (TRL's collator pads on the right by itself), and loads
    it without ``local_files_only``, so the copy saved with the trained model has the original's settings.
    """
    name_or_path = resolve_model_path(name_or_path)
    if name_or_path == tiny.NAME:
        tokenizer = tiny.tiny_tokenizer()
    else:
        from transformers import AutoTokenizer

        source, kwargs, kind = _source(name_or_path, gguf_file)
        if padding_side is None:  # save_pretrained records the flag in tokenizer_config.json; training saves this one
            kwargs.pop("local_files_only", None)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"could not load a tokenizer from {name_or_path!s} ({kind}): {err}. Save one next to "
                "the model with tokenizer.save_pretrained(folder)"
            ) from err
    if padding_side is None:
        return tokenizer
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike,
    *,
    dtype="auto",
    device: str | None = None,
    gguf_file: str | None = None,
    padding_side: str | None = "left",
):
    """Return ``(model, tokenizer)``, the model in eval mode on ``device``.

    Args:
        name_or_path: a local folder (``save_pretrained`` output), a hub name, a ``.gguf`` file or a built-in alias
            (:data:`ALIASES`). A local folder is opened with ``local_files_only`` so a missing file fails at once
            instead of trying the network.
        dtype: ``"auto"`` keeps the checkpoint dtype; CPU runs are usually fastest in ``float32`` or ``bfloat16``.
        device: defaults to ``cuda`` when available, else ``cpu``.
        gguf_file: file name inside ``name_or_path`` to load a GGUF checkpoint (dequantised to fp32 by transformers).
        padding_side: ``left`` for batched generation (new tokens must follow the prompt directly); see
            :func:`load_tokenizer`.

    The tokenizer gets a pad token (its eos token) when it has none; callers must not drop eos labels by
    comparing with the pad id (SmolLM2 pads with its eos token).
    """
    tokenizer = load_tokenizer(name_or_path, gguf_file=gguf_file, padding_side=padding_side)
    model = load_model(name_or_path, dtype=dtype, device=device, gguf_file=gguf_file)
    return model, tokenizer
