"""Load a causal LM and its tokenizer from a local folder, a hub name or a GGUF file; build tiny random ones for tests.

Every command that needs a model (``eksft eval``, ``eksft probe``, training) goes through
:func:`load_model_and_tokenizer`, so dtype, device and padding conventions are decided once.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

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


#: names that mean a built-in model, not a path or hub name (eksft.train.tiny, eksft.models.smollm)
ALIASES = ("tiny-random-llama", "smollm2-135m-instruct", "smollm2")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def looks_like_path(value: str) -> bool:
    """A value meant as a local path: starts with ``.``, ``~`` or ``/``, ends in ``.gguf``, has a backslash or more
    than one ``/``, is no valid hub name, or its first part is an existing local folder (``models/x``)."""
    v = str(value)
    return (v.startswith((".", "~", "/")) or v.endswith(".gguf") or "\\" in v or v.count("/") > 1
            or not HUB_ID.match(v) or ("/" in v and os.path.isdir(v.split("/")[0])))  # fmt: skip


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
        raise FileNotFoundError(f"{field}={v!r}: no such file or folder ({os.path.abspath(os.path.expanduser(v))}); "
                                "give an existing model folder or .gguf file, a hub name, or "
                                f"{' / '.join(repr(a) for a in ALIASES[:2])}.")  # fmt: skip
    if _cached_on_hub(v):
        return
    reason = hub_unreachable()
    if reason:
        raise ValueError(f"{field}={v!r} is not a local path, and as a hub model name it needs the hub, which is "
                         f"unreachable ({reason}); download it once while online or give a local folder.")  # fmt: skip


def _kwargs(name_or_path, gguf_file):
    check_model_source(name_or_path, "model")
    local = Path(name_or_path).is_dir()
    if not local and Path(name_or_path).exists():
        raise ValueError(f"{name_or_path} is a file, not a model folder; pass its folder (and gguf_file for GGUF)")
    kwargs = {"local_files_only": True} if local else {}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return kwargs, ("local folder" if local else "hub name (is the hub reachable?)")


def load_model(name_or_path: str | os.PathLike, *, dtype="auto", device: str | None = None,
               gguf_file: str | None = None):  # fmt: skip
    """The model alone, in eval mode on ``device`` (see :func:`load_model_and_tokenizer` for the arguments)."""
    from transformers import AutoModelForCausalLM

    kwargs, kind = _kwargs(name_or_path, gguf_file)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=resolve_dtype(dtype), **kwargs)
    except OSError as err:
        raise OSError(f"could not load model {name_or_path!s} as a {kind}: {err}") from err
    return model.to(device or default_device()).eval()


def load_tokenizer(name_or_path: str | os.PathLike, *, gguf_file: str | None = None, padding_side: str = "left"):
    """The tokenizer, with a pad token (its eos token) when it has none; ``left`` padding for generation."""
    from transformers import AutoTokenizer

    kwargs, kind = _kwargs(name_or_path, gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load a tokenizer from {name_or_path!s} ({kind}): {err}. Save one next to the "
                         "model with tokenizer.save_pretrained(folder)") from err  # fmt: skip
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
    padding_side: str = "left",
):
    """Return ``(model, tokenizer)``, the model in eval mode on ``device``.

    Args:
        name_or_path: a local folder (``save_pretrained`` output) or a hub name. A local folder is opened with
            ``local_files_only`` so a missing file fails at once instead of trying the network.
        dtype: ``"auto"`` keeps the checkpoint dtype; CPU runs are usually fastest in ``float32`` or ``bfloat16``.
        device: defaults to ``cuda`` when available, else ``cpu``.
        gguf_file: file name inside ``name_or_path`` to load a GGUF checkpoint (dequantised to fp32 by transformers).
        padding_side: ``left`` for batched generation (new tokens must follow the prompt directly).

    The tokenizer gets a pad token (its eos token) when it has none; callers must not drop eos labels by
    comparing with the pad id (SmolLM2 pads with its eos token).
    """
    tokenizer = load_tokenizer(name_or_path, gguf_file=gguf_file, padding_side=padding_side)
    model = load_model(name_or_path, dtype=dtype, device=device, gguf_file=gguf_file)
    return model, tokenizer


#: ChatML, as SmolLM2 and Qwen use it; the tiny test tokenizer gets it so chat-template code paths run in tests.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tiny_tokenizer():
    """A byte-level tokenizer (256 byte tokens + ChatML specials) built offline in milliseconds."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(byte_chars)}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>")  # fmt: skip
    fast.chat_template = CHATML_TEMPLATE
    return fast


def save_tiny_random_model(path: str | os.PathLike, *, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> Path:
    """Save a tiny random Llama (safetensors) and :func:`tiny_tokenizer` to ``path``; return the path.

    For tests and smoke runs of every command without a download. Its outputs are random bytes, so a model from
    this function almost never answers correctly.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
