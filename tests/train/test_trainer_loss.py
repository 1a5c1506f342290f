"""EKSFTTrainer's loss seam (CPU, tiny random Llama): the trainer's loss and gradients equal a direct call of the
loss function on the same batch; normalization="tokens" + scope="sequence" is invariant to gradient accumulation;
scope="global" gathering with a world-size-1 process group; padding-free batches pass position_ids to the loss.
The fused lm-head path (the default, loss_implementation="auto") is tested in test_fused_trainer.py."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from eksft.losses import (
    LOSSES,
    asft_loss,
    dft_loss,
    eaft_loss,
    eksft_loss,
    gem_loss,
    global_reg_loss,
    iw_sft_loss,
    psft_loss,
    random_mask_loss,
    sed_sft_loss,
    sft_loss,
    target_logprobs,
)
from eksft.losses.eksft_global import all_gather_cat, global_eksft_loss
from eksft.train import build_trainer

from .conftest import params


def first_batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._prepare_inputs(batch)


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def eksft_kwargs(c):
    """eksft_loss's keywords from an EKSFTConfig (both variants take the same ones; CASES below)."""
    return dict(
        rho=c.rho,
        lambda_entropy=c.lambda_entropy,
        lambda_kl=c.lambda_kl,
        selection=c.selection,
        scope=c.scope,
        variant=c.variant,
        entropy_unit=c.entropy_unit,
        normalization=c.normalization,
    )


def eaft_kwargs(c):
    """eaft_loss's keywords from an EKSFTConfig (full and top-k entropy; CASES below)."""
    return dict(alpha=c.eaft_alpha, entropy=c.eaft_entropy, topk=c.eaft_topk, normalization=c.normalization)


# What the trainer must pass to each loss, written out here (not read from eksft.losses.spec.BoundLoss or
# eksft.losses.SPECS) so a wrong entry in the library's table fails this test. Per case: the loss function, the
# config overrides, and the expected keyword arguments built from the config (EKSFTConfig field -> loss keyword).
# Every overridden field differs from both the EKSFTConfig default and the loss function's default, and the values
# differ from each other, so a dropped, defaulted or swapped mapping changes the loss. ``normalization`` is
# parametrised (mean / tokens).
CASES = {
    "eksft": (
        eksft_loss,
        dict(
            loss_type="eksft",
            rho=0.3,
            lambda_entropy=0.2,
            lambda_kl=0.5,
            selection="entropy",
            scope="sequence",
            entropy_unit="nats",
        ),
        eksft_kwargs,
    ),
    "eksft_official": (
        eksft_loss,
        dict(
            loss_type="eksft", variant="official", rho=0.4, lambda_entropy=0.2, lambda_kl=0.5, selection="intersection"
        ),
        eksft_kwargs,
    ),
    "sft": (sft_loss, dict(loss_type="sft"), lambda c: dict(normalization=c.normalization)),
    "dft": (dft_loss, dict(loss_type="dft"), lambda c: dict(normalization=c.normalization)),
    "iw_sft": (
        iw_sft_loss,
        dict(loss_type="iw_sft", iw_clip=0.9),
        lambda c: dict(clip=c.iw_clip, normalization=c.normalization),
    ),
    "psft": (
        psft_loss,
        dict(loss_type="psft", psft_epsilon_high=0.01),
        lambda c: dict(epsilon_high=c.psft_epsilon_high, normalization=c.normalization),
    ),
    "asft": (
        asft_loss,
        dict(loss_type="asft", asft_lambda=0.7),
        lambda c: dict(lambda_kl=c.asft_lambda, normalization=c.normalization),
    ),
    "sed_sft": (
        sed_sft_loss,
        dict(loss_type="sed_sft", sed_lambda=2.5, sed_k=3, sed_tau=0.06),
        lambda c: dict(lambda_sed=c.sed_lambda, k=c.sed_k, tau=c.sed_tau, normalization=c.normalization),
    ),
    "gem": (
        gem_loss,
        dict(loss_type="gem", gem_beta=0.3),
        lambda c: dict(beta=c.gem_beta, normalization=c.normalization),
    ),
    "eaft": (
        eaft_loss,
        dict(loss_type="eaft", eaft_alpha=0.6, eaft_entropy="full", eaft_topk=3),
        eaft_kwargs,
    ),
    "eaft_topk": (
        eaft_loss,
        dict(loss_type="eaft", eaft_alpha=1.5, eaft_topk=4),
        eaft_kwargs,
    ),
    "global_reg": (
        global_reg_loss,
        dict(loss_type="global_reg", lambda_entropy=0.2, lambda_kl=0.5, entropy_unit="nats"),
        lambda c: dict(
            lambda_entropy=c.lambda_entropy,
            lambda_kl=c.lambda_kl,
            entropy_unit=c.entropy_unit,
            normalization=c.normalization,
        ),
    ),
    # seed: the trainer's per-step seed, seed * 1_000_003 + global_step * 1_009 + micro-batch index (step 0, first)
    "random_mask": (
        random_mask_loss,
        dict(loss_type="random_mask", random_mask_fraction=0.4, lambda_entropy=0.2, lambda_kl=0.5, entropy_unit="nats"),
        lambda c: dict(
            fraction=c.random_mask_fraction,
            lambda_entropy=c.lambda_entropy,
            lambda_kl=c.lambda_kl,
            entropy_unit=c.entropy_unit,
            normalization=c.normalization,
            seed=c.seed * 1_000_003,
        ),
    ),
}
NEEDS_REFERENCE_LOGITS = {"eksft", "iw_sft", "asft", "global_reg", "random_mask"}


@pytest.mark.parametrize("normalization", ["mean", "tokens"])
@pytest.mark.parametrize("case", list(CASES))
def test_trainer_loss_equals_direct_call(make_config, case, normalization):
    loss_fn, overrides, expected_kwargs = CASES[case]
    cfg = make_config(normalization=normalization, seed=3, **overrides)
    trainer = build_trainer(cfg)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = first_batch(trainer)
    fwd = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        start_logits = model(**fwd).logits  # the starting checkpoint, which is the reference model
        for p in model.parameters():  # make the policy differ from the reference so KL terms are not all zero
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    extra = (start_logits,) if cfg.loss_type in NEEDS_REFERENCE_LOGITS else ()
    if cfg.loss_type == "psft":  # the old policy: the one the batch was drawn with (here the starting model)
        inputs["old_logps"] = target_logprobs(start_logits, inputs["labels"])
        extra = (inputs["old_logps"],)
    # "tokens": as if a second micro-batch of the same size followed in this optimiser step
    n_items = 2 * int((inputs["labels"][:, 1:] != -100).sum()) if normalization == "tokens" else None
    loss = trainer.compute_loss(model, dict(inputs), num_items_in_batch=n_items)
    loss.backward()
    g_trainer = grads(model)
    model.zero_grad()

    logits = model(**fwd).logits
    direct = loss_fn(logits, inputs["labels"], *extra, num_items_in_batch=n_items, **expected_kwargs(cfg))
    direct.loss.backward()
    torch.testing.assert_close(loss.detach(), direct.loss.detach())
    for n, g in grads(model).items():
        torch.testing.assert_close(g_trainer[n], g, msg=n)
    if loss_fn is eksft_loss:
        assert direct.metrics["kl_mean"] > 0 and direct.metrics["masked_fraction"] > 0


def test_gradient_accumulation_invariance_tokens_sequence(make_config):
    """One SGD step on 4 sequences equals 2 accumulated micro-batches of 2 (same sequences, same order)."""
    kw = dict(
        loss_type="eksft",
        normalization="tokens",
        scope="sequence",
        max_steps=1,
        optim="sgd",
        rho=0.3,
        learning_rate=0.5,
        max_grad_norm=0.0,
    )
    full = build_trainer(make_config(per_device_train_batch_size=4, gradient_accumulation_steps=1, **kw))
    start = params(full.model)
    full.train()
    split = build_trainer(make_config(per_device_train_batch_size=2, gradient_accumulation_steps=2, **kw))
    split.train()
    a, b = params(full.model), params(split.model)
    assert any(not torch.equal(start[n], a[n]) for n in a)  # the step did something
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-6, msg=n)


def test_mean_normalization_is_divided_by_accumulation_steps(make_config):
    cfg = make_config(loss_type="sft", normalization="mean", gradient_accumulation_steps=4)
    trainer = build_trainer(cfg)
    trainer.model.train()
    inputs = first_batch(trainer)
    trainer.current_gradient_accumulation_steps = 4
    scaled = trainer.compute_loss(trainer.model, dict(inputs))
    direct = LOSSES["sft"](
        trainer.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits, inputs["labels"]
    )
    torch.testing.assert_close(scaled, direct.loss / 4)


def test_global_scope_gather_world_size_one(tmp_path):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 11, 17, generator=g) * 2
    ref = logits + torch.randn(3, 11, 17, generator=g)
    labels = torch.randint(0, 17, (3, 11), generator=g)
    labels[:, :3] = -100
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        values = torch.arange(5.0)
        gathered, offset = all_gather_cat(values)
        assert torch.equal(gathered, values) and offset == 0
        kw = dict(rho=0.2, lambda_entropy=0.05, lambda_kl=0.05, selection="union", normalization="mean")
        a_logits = logits.clone().requires_grad_(True)
        got = global_eksft_loss(a_logits, labels, ref, **kw)  # through all_gather + plan_eksft
        got.loss.backward()
    finally:
        dist.destroy_process_group()
    b_logits = logits.clone().requires_grad_(True)
    want = eksft_loss(b_logits, labels, ref, scope="micro_batch", **kw)
    want.loss.backward()
    torch.testing.assert_close(got.loss, want.loss)
    torch.testing.assert_close(a_logits.grad, b_logits.grad)
    assert torch.equal(got.mask, want.mask)
    assert got.metrics["masked_fraction"] == want.metrics["masked_fraction"]


def test_padding_free_passes_position_ids(make_config):
    """A padding-free batch is one packed row; with scope="sequence" the trainer's loss equals the loss function
    given position_ids (one Top-K per packed sequence), not the one that treats the row as a single sequence."""
    trainer = build_trainer(
        make_config(
            loss_type="eksft",
            scope="sequence",
            padding_free=True,
            max_length=None,
            per_device_train_batch_size=3,
            rho=0.3,
        )
    )
    inputs = first_batch(trainer)
    pos = inputs["position_ids"]
    assert inputs["input_ids"].shape[0] == 1 and int((pos == 0).sum()) == 3  # three sequences in one row
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(inputs))
        fwd = {k: v for k, v in inputs.items() if k != "labels"}
        logits = model(**fwd).logits
        ref = logits.clone()  # the reference is the starting model, which the policy still is
        kw = dict(rho=0.3, scope="sequence")
        with_ids = LOSSES["eksft"](logits, inputs["labels"], ref, position_ids=pos, **kw)
        without = LOSSES["eksft"](logits, inputs["labels"], ref, **kw)
    torch.testing.assert_close(loss, with_ids.loss)
    assert not torch.equal(with_ids.mask, without.mask)


def test_psft_old_logps_snapshot_per_data_batch(make_config):
    """With 3 updates per data batch the old log-probs of the 2nd and 3rd updates come from the policy as it was at
    the draw, so the ratio moves away from 1; with 1 update it is exactly 1."""
    trainer = build_trainer(make_config(loss_type="psft", psft_updates_per_batch=3, max_steps=3))
    trainer.train()
    from eksft.jobs.metrics import read_metrics

    ratios = [r["ratio_mean"] for r in read_metrics(trainer.args.output_dir) if "ratio_mean" in r]
    assert len(ratios) == 3
    assert abs(ratios[0] - 1.0) < 1e-5 and abs(ratios[2] - 1.0) > 1e-4
