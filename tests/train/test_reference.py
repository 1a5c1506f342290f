"""Reference models (CPU, tiny random Llama): LoRA training uses the policy with adapters disabled as the reference
(no second model) and that reference stays the starting model; a reference with another vocabulary size is refused;
losses that need no reference never load one; an explicit ref_model path is loaded and used."""

from __future__ import annotations

import pytest
import torch

from eksft.models.tiny import save_tiny, tiny_random_llama
from eksft.train import build_trainer, reference


def test_peft_reference_is_policy_with_adapters_disabled(make_config):
    # gradient checkpointing on (TRL's default) to cover it with LoRA
    trainer = build_trainer(
        make_config(
            loss_type="eksft", use_peft=True, lora_r=4, learning_rate=5e-2, gradient_checkpointing=True, max_steps=3
        )
    )
    assert trainer.ref_model is None  # no second copy
    trainer.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    fwd = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    ref_logits = trainer._reference(trainer.model, fwd)
    start, _ = tiny_random_llama(seed=0)
    with torch.no_grad():
        torch.testing.assert_close(ref_logits, start(**fwd).logits)  # = the starting checkpoint
        assert not torch.allclose(trainer.model(**fwd).logits, ref_logits)  # the adapters did train
    from eksft.jobs.metrics import read_metrics

    kl = [r["kl_mean"] for r in read_metrics(trainer.args.output_dir) if "kl_mean" in r]
    assert kl[0] == 0.0 and kl[-1] > 0.0  # KL to the reference starts at 0 and grows


def test_reference_with_other_vocabulary_is_refused(make_config, tmp_path):
    other = save_tiny(tmp_path / "other", vocab_size=150)
    with pytest.raises(ValueError, match="vocabulary size 150"):
        build_trainer(make_config(loss_type="eksft", ref_model=other))


def test_vocabulary_size_of_a_zero3_partitioned_model():
    """Under ZeRO-3 a loaded model's weights are 0-element placeholders; the full shape is in ``ds_shape``."""
    model, _ = tiny_random_llama()
    weight = model.get_output_embeddings().weight
    full = weight.shape[0]
    weight.data = torch.empty(0)
    weight.ds_shape = torch.Size([full, 32])
    assert reference.vocab_size(model) == full


def test_reference_tokenizer_must_match():
    policy, tok = tiny_random_llama(seed=0)
    ref, other_tok = tiny_random_llama(seed=1)
    vocab = other_tok.get_vocab()
    other_tok.add_tokens(["<extra>"])  # same model size, different token table
    assert other_tok.get_vocab() != vocab
    with pytest.raises(ValueError, match="different tokenizer"):
        reference.check_compatible(policy, ref, tok, other_tok, "other")


def test_explicit_reference_path_is_used(make_config, tmp_path):
    path = save_tiny(tmp_path / "ref", seed=7)
    trainer = build_trainer(make_config(loss_type="asft", ref_model=path))
    want, _ = tiny_random_llama(seed=7)
    got = dict(trainer.ref_model.named_parameters())
    for n, p in want.named_parameters():
        torch.testing.assert_close(got[n], p)
    assert not any(p.requires_grad for p in trainer.ref_model.parameters()) and not trainer.ref_model.training


def test_losses_without_reference_never_load_one(make_config, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("reference loaded for a loss that needs none")

    monkeypatch.setattr("eksft.train.trainer.load_reference", boom)
    monkeypatch.setattr("eksft.train.trainer.EKSFTTrainer._reference", boom)
    for loss_type in ("sft", "dft", "gem"):
        trainer = build_trainer(make_config(loss_type=loss_type, max_steps=1))
        trainer.train()
        assert trainer.ref_model is None
