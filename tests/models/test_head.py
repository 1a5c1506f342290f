"""``eksft.models.head``: the pieces the fused loss head takes from a Hugging Face causal LM.

Checks, on CPU with tiny random models (no download, a few seconds): the extracted weight, bias, ``logit_scale`` and
soft-cap reproduce the model's own logits (Llama tied and untied, Gemma2, Cohere, Granite); a whole-model EKSFT step
through the fused head gives the same parameter gradients as the logits path (tied embeddings); LoRA on ``lm_head``
is refused and LoRA elsewhere is kept.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from eksft.losses import eksft_head_loss, eksft_loss
from eksft.losses.fused import head_logits
from eksft.models import backbone_hidden_states, lm_head_parts
from eksft.models.tiny import TINY_SIZES

pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = dict(TINY_SIZES, vocab_size=211, max_position_embeddings=64)


def tiny(name, **extra):
    torch.manual_seed(0)
    config = getattr(transformers, f"{name}Config")(**SMALL, **extra)
    return getattr(transformers, f"{name}ForCausalLM")(config).eval()


MODELS = {
    "llama_untied": lambda: tiny("Llama", tie_word_embeddings=False),
    "llama_tied": lambda: tiny("Llama", tie_word_embeddings=True),
    "gemma2_softcap": lambda: tiny("Gemma2", head_dim=8, final_logit_softcapping=3.0),
    "cohere_logit_scale": lambda: tiny("Cohere", logit_scale=0.25),
    "granite_logits_scaling": lambda: tiny("Granite", logits_scaling=4.0),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_parts_reproduce_model_logits(name):
    model = MODELS[name]()
    ids = torch.randint(0, SMALL["vocab_size"], (2, 11))
    parts = lm_head_parts(model)
    assert parts.tied == bool(model.config.get_text_config().tie_word_embeddings)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        hidden = backbone_hidden_states(model, input_ids=ids)
    got = head_logits(
        hidden,
        parts.weight,
        parts.bias,
        logit_scale=parts.logit_scale,
        final_logit_softcapping=parts.final_logit_softcapping,
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_whole_model_step_matches_logits_path_with_tied_embeddings():
    ids = torch.randint(0, SMALL["vocab_size"], (2, 13), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :5] = -100
    ref = MODELS["llama_tied"]()
    with torch.no_grad():  # a reference that differs from the policy, so KL is not zero
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
        ref_logits = ref(input_ids=ids).logits
        ref_hidden = backbone_hidden_states(ref, input_ids=ids)
    grads = []
    for fused in (False, True):
        model = MODELS["llama_tied"]().train()
        if fused:
            parts = lm_head_parts(model)
            hidden = backbone_hidden_states(model, input_ids=ids)
            r = eksft_head_loss(
                hidden,
                parts.weight,
                labels,
                ref_hidden,
                lm_head_parts(ref).weight,
                chunk_size=5,
                **parts.head_kwargs(lm_head_parts(ref)),
            )
        else:
            r = eksft_loss(model(input_ids=ids).logits, labels, ref_logits)
        r.loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-4, msg=n)


def test_lora_on_lm_head_is_refused_and_elsewhere_kept():
    import peft  # a hard dependency of eksft (pyproject.toml)

    on_head = peft.get_peft_model(MODELS["llama_untied"](), peft.LoraConfig(r=2, target_modules=["lm_head", "q_proj"]))
    with pytest.raises(ValueError, match="LoRA"):
        lm_head_parts(on_head)
    elsewhere = peft.get_peft_model(MODELS["llama_untied"](), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    parts = lm_head_parts(elsewhere)
    ids = torch.randint(0, SMALL["vocab_size"], (1, 7))
    with torch.no_grad():
        for module in elsewhere.modules():  # make the adapter non-zero so bypassing it would show
            if hasattr(module, "lora_B") and "default" in module.lora_B:
                module.lora_B["default"].weight.fill_(0.5)
        expected = elsewhere(input_ids=ids).logits
        got = head_logits(backbone_hidden_states(elsewhere, input_ids=ids), parts.weight, parts.bias)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_not_a_causal_lm():
    with pytest.raises(ValueError, match="lm_head"):
        lm_head_parts(torch.nn.Linear(3, 3))
