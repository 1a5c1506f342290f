"""``tiny-random-llama``: a built-in 2-layer random Llama with a character-level tokenizer and a ChatML template.

The one tiny-model builder: the CPU demo config, ``eksft eval tiny-random-llama`` and the tests use it. No download,
builds in milliseconds, deterministic from a seed. It learns nothing useful; it exercises every code path of training
(chat templates, assistant masks, references, LoRA) and evaluation (generation, probe, drift). Loaded by name through
:mod:`eksft.models.loading`; :func:`save_tiny` writes it to a folder for the commands that take one.
"""

from __future__ import annotations

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

NAME = "tiny-random-llama"
SPECIALS = ["<pad>", "<unk>", "<s>", "<|im_end|>", "<|im_start|>"]
# ChatML with {% generation %} markers so TRL's assistant_only_loss works.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable ASCII character plus newline; eos is ``<|im_end|>``, pad is ``<pad>``."""
    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(SPECIALS + chars)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


#: The tiny models' sizes, for any architecture's config (tests build Gemma2, Cohere, ... configs from them).
TINY_SIZES = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)


def tiny_config(**overrides) -> LlamaConfig:
    """The tiny Llama's sizes (2 layers, hidden 32, 4 heads, untied head), any field overridden: the one place a
    tiny ``LlamaConfig`` is written (``eksft losses`` and the tests pass their own sizes)."""
    return LlamaConfig(**{**TINY_SIZES, "max_position_embeddings": 512, "tie_word_embeddings": False, **overrides})


def tiny_random_llama(seed: int = 0, **overrides) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    overrides.setdefault("vocab_size", len(tok))
    cfg = tiny_config(
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, **overrides
    )
    return LlamaForCausalLM(cfg), tok


def save_tiny(path, seed: int = 0, **overrides) -> str:
    """Write a tiny model and its tokenizer to ``path`` (a folder usable as ``model_name_or_path``)."""
    model, tok = tiny_random_llama(seed, **overrides)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
