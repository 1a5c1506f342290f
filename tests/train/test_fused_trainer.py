"""loss_implementation="fused" in EKSFTTrainer (CPU, tiny random Llama, fp32): the fused lm head gives the loss and
gradients of the logits path (eksft, sft; full fine-tuning, LoRA with adapters-disabled reference, tied embeddings),
one optimiser step through Trainer.train() lands on the same parameters, and configs the fused head does not serve
fall back (auto) or are refused (fused)."""

from __future__ import annotations

import contextlib
import logging
from unittest import mock

import pytest
import torch
from datasets import Dataset

from eksft.losses import BoundLoss
from eksft.models.tiny import save_tiny
from eksft.train import build_trainer

from .conftest import params


def first_batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def perturb(model, scale=0.05, only_lora=False):
    """The same deterministic perturbation on both models, so the policy differs from the reference (KL > 0)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in sorted(model.named_parameters()):
            if p.requires_grad and (not only_lora or "lora_" in n):
                p.add_(scale * torch.randn(p.shape, generator=g))


@contextlib.contextmanager
def fused_only():
    """Inside (a training step, not trainer construction, whose config check calls the logits loss on a dummy
    batch): the logits-path loss call fails, and the fused one must run (no silent fallback)."""
    calls = []
    real = BoundLoss.on_hidden

    def no_logits(*a, **k):
        raise AssertionError("the logits path ran under loss_implementation='fused'")

    def counted(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    with mock.patch.object(BoundLoss, "on_logits", no_logits), mock.patch.object(BoundLoss, "on_hidden", counted):
        yield
    assert calls


def loss_and_grads(cfg, only_lora=False, during=contextlib.nullcontext):
    trainer = build_trainer(cfg)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1
    perturb(model, only_lora=only_lora)
    inputs = first_batch(trainer)
    with during():
        loss = trainer.compute_loss(model, dict(inputs))
        loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return trainer, loss.detach(), grads


def assert_same(make_config, tol=1e-5, only_lora=False, **overrides):
    fused, loss_f, g_f = loss_and_grads(make_config(loss_implementation="fused", **overrides), only_lora, fused_only)
    logits, loss_l, g_l = loss_and_grads(make_config(loss_implementation="logits", **overrides), only_lora)
    assert (fused.loss_implementation, logits.loss_implementation) == ("fused", "logits")
    torch.testing.assert_close(loss_f, loss_l, rtol=tol, atol=tol)
    assert g_f.keys() == g_l.keys() and g_f
    for n in g_l:
        torch.testing.assert_close(g_f[n], g_l[n], rtol=tol, atol=tol, msg=n)
    return fused


@pytest.mark.parametrize("loss_type", ["eksft", "sft", "eaft"])
def test_fused_step_equals_logits_step(make_config, loss_type):
    trainer = assert_same(make_config, loss_type=loss_type, rho=0.3, lambda_kl=0.5)
    if loss_type == "eksft":
        m = trainer._loss_metrics["train"].summary()
        assert m["kl_mean"] > 0 and m["masked_fraction"] > 0


def test_fused_with_lora_reference_is_adapters_disabled(make_config):
    trainer = assert_same(
        make_config, only_lora=True, loss_type="eksft", use_peft=True, lora_r=4, rho=0.3, lambda_kl=0.5
    )
    assert trainer.ref_model is None
    assert trainer._loss_metrics["train"].summary()["kl_mean"] > 0  # the perturbed adapters vs. disabled ones


def test_fused_tied_embeddings(make_config, tmp_path):
    path = save_tiny(tmp_path / "tied", seed=0, tie_word_embeddings=True)
    trainer = assert_same(make_config, model_name_or_path=path, loss_type="eksft", rho=0.3, lambda_kl=0.5)
    m = trainer.model
    assert m.get_output_embeddings().weight is m.get_input_embeddings().weight


def test_one_optimiser_step_same_parameters(make_config):
    """Through Trainer.train() (accelerate-prepared model, the patched forward): SGD so tiny gradient differences
    are not amplified the way Adam's first step (about lr * sign(g)) would."""
    out = {}
    for impl in ("fused", "logits"):
        trainer = build_trainer(
            make_config(
                loss_implementation=impl, loss_type="eksft", max_steps=1, optim="sgd", learning_rate=0.5, rho=0.3
            )
        )
        start = params(trainer.model)
        with fused_only() if impl == "fused" else contextlib.nullcontext():
            trainer.train()
        out[impl] = params(trainer.model)
    assert any(not torch.equal(start[n], out["fused"][n]) for n in start)
    for n in out["logits"]:
        torch.testing.assert_close(out["fused"][n], out["logits"][n], rtol=1e-5, atol=1e-6, msg=n)


def test_auto_is_the_default_and_uses_fused(make_config):
    cfg = make_config(loss_type="eksft")
    assert cfg.loss_implementation == "auto"
    assert build_trainer(cfg).loss_implementation == "fused"


@pytest.mark.parametrize("overrides", [dict(loss_type="psft"), dict(loss_type="iw_sft"), dict(variant="official")])
def test_auto_falls_back_to_logits_with_one_info_line(make_config, caplog, overrides):
    with caplog.at_level(logging.INFO, logger="eksft.train.trainer"):
        trainer = build_trainer(make_config(loss_implementation="auto", **overrides))
    assert trainer.loss_implementation == "logits"
    lines = [r for r in caplog.records if "loss_implementation=auto" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    trainer.train()  # the logits path trains as before


@pytest.mark.parametrize("overrides", [dict(loss_type="psft"), dict(loss_type="iw_sft"), dict(variant="official")])
def test_explicit_fused_unsupported_is_an_error(make_config, overrides):
    with pytest.raises(ValueError, match="loss_implementation='fused'"):
        build_trainer(make_config(loss_implementation="fused", **overrides))


def test_lora_on_lm_head_refused(make_config):
    """LoRA on lm_head: TRL's SFTTrainer itself refuses it (its own fused head), before our check; both name it."""
    lora = dict(use_peft=True, lora_r=4, lora_target_modules=["q_proj", "lm_head"])
    with pytest.raises(ValueError, match="lm_head"):
        build_trainer(make_config(loss_implementation="fused", **lora))


def test_peft_wrapper_on_lm_head(make_config, caplog):
    """A PEFT model given in with lm_head in modules_to_save: head.py's check refuses fused, auto falls back."""
    from peft import LoraConfig, get_peft_model

    from eksft.models.tiny import tiny_random_llama
    from eksft.train import EKSFTTrainer

    model, tok = tiny_random_llama(0)
    model = get_peft_model(
        model, LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"], task_type="CAUSAL_LM")
    )
    ds = Dataset.from_list([{"prompt": "What is 2 + 2?", "completion": "4."}] * 4)
    with pytest.raises(ValueError, match="loss_implementation='fused': lm_head is a ModulesToSaveWrapper"):
        EKSFTTrainer(model, args=make_config(loss_implementation="fused"), train_dataset=ds, processing_class=tok)
    with caplog.at_level(logging.INFO, logger="eksft.train.trainer"):
        trainer = EKSFTTrainer(model, args=make_config(), train_dataset=ds, processing_class=tok)
    assert trainer.loss_implementation == "logits"
    assert any("ModulesToSaveWrapper" in r.getMessage() for r in caplog.records)
