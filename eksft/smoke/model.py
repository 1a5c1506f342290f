"""The smoke run's model: a randomly initialised model of the named model's architecture at tiny sizes, its
tokenizer when it is at hand, and (when the real ``config.json`` is at hand) the real model's parameter count and a
per-GPU memory estimate.

Nothing is downloaded. The architecture comes from the named model's ``config.json`` when it is a local folder or
in the local Hugging Face cache, else from its name (``Qwen/Qwen3-4B`` -> ``qwen3``; :data:`FAMILIES`), else Llama.

Memory estimate (:func:`memory_estimate`), per GPU, in bytes, for P parameters, N processes, micro-batch B, length T,
hidden size h, L layers, vocabulary V, intermediate size I; labelled an estimate everywhere it is printed:

- model states with mixed-precision Adam: bf16 weights 2P, bf16 gradients 2P, fp32 master weights + Adam moments
  12P (fp32 training: 4P + 4P + 8P, the same 16P). ZeRO-3 / FSDP full shard: 16P / N; ZeRO-2: 2P + 14P / N;
  ZeRO-1: 4P + 12P / N; no sharding (DDP, one process): 16P;
- a frozen bf16 reference (the KL and importance-weight losses): 2P, divided by N under ZeRO-3 / FSDP;
- activations: with gradient checkpointing, each layer's input kept (2 B T h L) plus one layer recomputed
  (2 B T (10 h + 3 I)); without it, all layers (2 B T (10 h + 3 I) L); plus fp32 logits and their gradient
  (8 B T V) unless the fused head serves the loss (then a chunk, ignored here).

Not counted: framework buffers, fragmentation, ZeRO's prefetch buckets, vLLM's share (``vllm_gpu_memory_utilization``)
and the CUDA context (~0.5-1 GiB): measure on the GPU.
"""

from __future__ import annotations

import json
import os

GiB = 1024**3

#: name fragment (lower case) -> transformers ``model_type``, tried in order
FAMILIES = (
    ("qwen3_moe", "qwen3_moe"),
    ("qwen3-30b-a3b", "qwen3_moe"),
    ("qwen3", "qwen3"),
    ("qwen2.5", "qwen2"),
    ("qwen2", "qwen2"),
    ("qwen", "qwen2"),
    ("smollm", "llama"),
    ("llama", "llama"),
    ("mistral", "mistral"),
    ("gemma", "gemma2"),
    ("phi", "phi3"),
)
#: tiny sizes of every smoke model
TINY = dict(
    num_hidden_layers=2,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,  # vLLM's GPU attention backends serve head sizes from 32
    max_position_embeddings=4096,
)


def _local_file(name: str, filename: str) -> str | None:
    """``filename`` of a local model folder or of a hub model in the local cache, or None (never downloads)."""
    path = os.path.expanduser(str(name))
    if os.path.isdir(path):
        candidate = os.path.join(path, filename)
        return candidate if os.path.isfile(candidate) else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(str(name), filename)
    except Exception:  # noqa: BLE001 (not a valid hub name: not cached)
        return None
    return found if isinstance(found, str) else None


def real_config(name: str):
    """The named model's own config (``PretrainedConfig``) when its ``config.json`` is at hand, else None."""
    path = _local_file(name, "config.json")
    if path is None:
        return None
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(os.path.dirname(path), local_files_only=True)


def family(name: str) -> str:
    lower = str(name).lower()
    return next((model_type for key, model_type in FAMILIES if key in lower), "llama")


def smoke_tokenizer(name: str):
    """``(tokenizer, source)``: the named model's tokenizer when it is at hand, else the built-in character one."""
    from eksft.models.tiny import tiny_tokenizer

    path = _local_file(name, "tokenizer_config.json")
    if path is not None:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(os.path.dirname(path), local_files_only=True), f"{name}'s own"
        except (OSError, ValueError):
            pass
    return tiny_tokenizer(), "built-in character tokenizer (eksft.models.tiny; the named one is not cached)"


def build_smoke_model(name: str, folder: str, seed: int = 0) -> dict:
    """Write a random tiny model of ``name``'s architecture and a tokenizer to ``folder``; return what was used."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    real = real_config(name)
    tokenizer, tokenizer_source = smoke_tokenizer(name)
    if real is not None:
        values = {k: v for k, v in real.to_dict().items() if k not in ("layer_types", "max_window_layers")}
        model_type, source = values.pop("model_type"), f"{name}'s config.json, shrunk"
        for key in ("architectures", "quantization_config", "auto_map", "transformers_version", "dtype"):
            values.pop(key, None)
    else:
        model_type, values = family(name), {}
        source = f"architecture '{model_type}' inferred from the name (its config.json is not at hand)"
    values.update(TINY, vocab_size=len(tokenizer))
    values.update(
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id
    )
    config = AutoConfig.for_model(model_type, **values)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with open(os.path.join(folder, "smoke_model.json"), "w", encoding="utf-8") as f:
        json.dump({"named": name, "model_type": model_type, "source": source}, f)
    return {
        "model_type": model_type,
        "source": source,
        "tokenizer": tokenizer_source,
        "parameters": sum(p.numel() for p in model.parameters()),
        "real_config": real,
    }


def parameter_count(config) -> int:
    """Parameters of a model built from ``config`` on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def memory_estimate(
    config,
    params: int,
    *,
    processes: int,
    sharding: str,
    batch: int,
    length: int,
    checkpointing: bool,
    reference: bool,
    logits: bool,
) -> dict:
    """Per-GPU bytes by part (the module docstring gives the formula); ``sharding`` is ``zero3``, ``zero2``,
    ``zero1``, ``fsdp`` or ``none``."""
    p, n = params, max(1, processes)
    states = {
        "zero3": 16 * p / n,
        "fsdp": 16 * p / n,
        "zero2": 2 * p + 14 * p / n,
        "zero1": 4 * p + 12 * p / n,
    }.get(sharding, 16 * p)
    ref = (2 * p / n if sharding in ("zero3", "fsdp") else 2 * p) if reference else 0
    h, layers = config.hidden_size, config.num_hidden_layers
    inter = getattr(config, "intermediate_size", 4 * h) or 4 * h
    layer = 2 * batch * length * (10 * h + 3 * inter)
    acts = 2 * batch * length * h * layers + layer if checkpointing else layer * layers
    if logits:
        acts += 8 * batch * length * config.vocab_size
    parts = {"model_states": states, "reference": ref, "activations": acts}
    return {**{k: round(v / GiB, 2) for k, v in parts.items()}, "total": round(sum(parts.values()) / GiB, 1)}
