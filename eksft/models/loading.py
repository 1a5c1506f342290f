"""Load a causal LM and its tokenizer from a local folder, a hub name or a GGUF file; build tiny random ones for tests.

Every command that needs a model (``eksft eval``, ``eksft probe``, training) goes through
:func:`load_model_and_tokenizer`, so dtype, device and padding conventions are decided once.
"""

from __future__ import annotations

import os
from pathlib import Path

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


def _kwargs(name_or_path, gguf_file):
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
    comparing with the pad id (docs/ecosystem.md).
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
