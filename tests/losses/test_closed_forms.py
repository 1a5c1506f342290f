"""Closed-form cases of the EKSFT loss and hand-worked examples of both variants, and of EAFT (docs/losses.md).
CPU, < 1 s."""

import math

import pytest
import torch

from eksft.losses import eaft_loss, eksft_loss, sft_loss

from .conftest import make_batch

LN = math.log


def two_class(p0: float) -> list[float]:
    """Logits [log p0, log(1 - p0)]: softmax gives exactly (p0, 1 - p0)."""
    return [LN(p0), LN(1 - p0)]


def hand_batch():
    """Two sequences, T = 3, V = 2, labels [-100, y1, y2]; rows named by p0 = P(token 0).

    seq A rows: z0 p0=3/4, z1 p0=1/2, z2 p0=1/4     labels: -100, 0, 0
    seq B rows: z0 p0=3/4, z1 p0=1/8, z2 p0=1/16    labels: -100, 1, 1
    Reference: uniform (all-zero logits), so log q = -ln 2 and KL(p || q) = ln 2 - H(p).
    """
    logits = torch.tensor(
        [
            [two_class(3 / 4), two_class(1 / 2), two_class(1 / 4)],
            [two_class(3 / 4), two_class(1 / 8), two_class(1 / 16)],
        ],
        dtype=torch.float64,
    )
    labels = torch.tensor([[-100, 0, 0], [-100, 1, 1]])
    return logits, labels, torch.zeros_like(logits)


def test_paper_variant_hand_worked():
    logits, labels, ref = hand_batch()
    out = eksft_loss(logits, labels, ref, rho=0.4, entropy_unit="nats")
    # Targets (row j-1 scores label j): A1 <- z0(3/4), A2 <- z1(1/2), B1 <- z0(3/4), B2 <- z1(1/8).
    # H: A1 = B1 = H(3/4) = 0.562335, A2 = ln 2 = 0.693147, B2 = H(1/8) = 0.376770.
    # k = ceil(0.4 * 4) = 2. Paper rank: A2 has rank 1; A1, B1 tie with rank 3 > 2 and are both left out.
    #   M_H = {A2}.  KL = ln2 - H: A1 = B1 = 0.130812 (tie, rank 3), A2 = 0, B2 = 0.316377 (rank 1) -> M_KL = {B2}.
    # M = {A2, B2}; kept: A1 (-ln 3/4 = 0.287682), B1 (-ln 1/4 = 1.386294) -> L_CE = 0.836988
    # L_H = (0.693147 + 0.376770) / 2 = 0.534959;  L_KL = (0 + 0.316377) / 2 = 0.158189
    # L = 0.836988 - 0.05 * 0.534959 + 0.05 * 0.158189 = 0.818150
    assert out.loss.item() == pytest.approx(0.8181497087, abs=1e-9)
    assert out.mask.tolist() == [[False, False, True], [False, False, True]]
    assert out.metrics["ce"] == pytest.approx(0.8369882168)
    assert out.metrics["entropy_masked_fraction"] == 0.25 and out.metrics["kl_masked_fraction"] == 0.25
    assert out.metrics["iou_entropy_kl"] == 0.0
    assert out.metrics["lambda_entropy_per_nat"] == 0.05


def test_paper_variant_normalized_entropy_unit():
    """The default unit: lambda_H weights H / ln V (the authors' unit), so per nat it is 0.05 / ln 2 here (V = 2)."""
    logits, labels, ref = hand_batch()
    out = eksft_loss(logits, labels, ref, rho=0.4)  # same masks as the hand-worked case above
    # L = L_CE - 0.05 * L_H / ln 2 + 0.05 * L_KL = 0.836988 - 0.05 * 0.534959 / 0.693147 + 0.05 * 0.158189
    #   = 0.836988 - 0.038589 + 0.007909 = 0.806309
    assert out.loss.item() == pytest.approx(0.8063085312, abs=1e-9)
    assert out.metrics["lambda_entropy_per_nat"] == pytest.approx(0.05 / LN(2))
    assert out.metrics["entropy_term"] == pytest.approx(0.5349586709 / LN(2))  # in lambda_H's unit
    assert out.metrics["entropy_masked_mean"] == pytest.approx(0.5349586709)  # statistics stay in nats


def test_entropy_unit_nats_is_ln_v_times_stronger():
    """Same objective iff lambda_H(nats) = lambda_H(normalized) / ln V, at any V."""
    logits, labels, ref = make_batch(seed=5, dtype=torch.float64)
    V = logits.shape[-1]
    a = eksft_loss(logits, labels, ref, lambda_entropy=0.05)
    b = eksft_loss(logits, labels, ref, lambda_entropy=0.05 / LN(V), entropy_unit="nats")
    assert a.loss.item() == pytest.approx(b.loss.item(), abs=1e-12)


def test_official_selects_kl_set_by_true_kl_not_by_penalty():
    """The authors select M_KL by the true KL (calculate_kl_and_entropy) and only penalise with sum p (p - log q).

    One sequence, V = 2, labels [-100, 0, 0, 0]; statistics from row j at label position j (their off-by-one).
      row 1 (A): p = (1/16, 15/16), q = (1/2, 1/2): KL = ln2 - H(1/16) = 0.693147 - 0.233792 = 0.459355;
                 penalty = sum p^2 + ln 2 = 0.882813 + 0.693147 = 1.575960; H = 0.233792
      row 2 (B): p = (1/2, 1/2),   q = (1/8, 7/8):  KL = -ln2 - (ln(1/8) + ln(7/8)) / 2 = 0.413339;
                 penalty = 1/2 - (ln(1/8) + ln(7/8)) / 2 = 1.606486; H = ln 2 = 0.693147
      row 3 (C): p = q = (1/4, 3/4): KL = 0; penalty = 0.625 + 0.562335 = 1.187335; H = 0.562335
    k = floor(0.5 * 3) = 1. True KL ranks A first; the penalty would rank B first (their +H + sum p^2 flips it).
    M_H = {B}, M_KL = {A}, M = {j=1, j=2}. Kept: j=3, scored by row 2 = (1/2, 1/2), label 0: CE = ln 2.
    Entropy term over M_H, / ln V: ln2 / ln2 = 1.0 (>= 0.5 -> lambda_H x 0.95 = 0.0475).
    Penalty over M_KL: 1.575960 (<= 2.0 -> lambda_KL x 0.95 = 0.0475).
    L = 0.693147 - 0.0475 * 1.0 + 0.0475 * 1.575960 = 0.720505.
    (Selecting by the penalty instead: M = {B} only, CE over j=1 and j=3 = 0.490415, penalty 1.606486, L = 0.519219.)
    """
    logits = torch.tensor(
        [[two_class(3 / 4), two_class(1 / 16), two_class(1 / 2), two_class(1 / 4)]], dtype=torch.float64
    )
    ref = torch.tensor([[two_class(1 / 2), two_class(1 / 2), two_class(1 / 8), two_class(1 / 4)]], dtype=torch.float64)
    out = eksft_loss(logits, torch.tensor([[-100, 0, 0, 0]]), ref, rho=0.5, variant="official")
    assert out.mask.tolist() == [[False, True, True, False]]
    assert out.loss.item() == pytest.approx(0.7205052654, abs=1e-9)
    assert out.metrics["kl_term"] == pytest.approx(0.8828125 + LN(2))  # the penalty, what the lambda rule reads
    assert out.metrics["kl_threshold"] == pytest.approx(0.4593555, abs=1e-6)  # torch.topk's k-th value: A's true KL


def test_official_refuses_nats():
    logits, labels, ref = hand_batch()
    with pytest.raises(ValueError, match="entropy_unit"):
        eksft_loss(logits, labels, ref, variant="official", entropy_unit="nats")


def test_official_variant_hand_worked():
    logits, labels, ref = hand_batch()
    out = eksft_loss(logits, labels, ref, rho=0.4, variant="official")
    # Statistics from row j at label position j (the authors' off-by-one):
    #   A1 <- z1(1/2), A2 <- z2(1/4), B1 <- z1(1/8), B2 <- z2(1/16).
    # H: ln2 = 0.693147, 0.562335, 0.376770, 0.233792. Penalty sum_v p (p - log q) = sum p^2 + ln 2:
    #   0.5 + ln2 = 1.193147, 0.625 + ln2 = 1.318147, 0.78125 + ln2 = 1.474397, 0.882813 + ln2 = 1.575960.
    # k = floor(0.4 * 4) = 1 (the paper would take ceil = 2): M_H = {A1}, M_KL = {B2}, M = {A1, B2}.
    # CE still scores label j with row j-1; kept A2 <- z1(1/2) label 0: ln 2 = 0.693147,
    #   B1 <- z0(3/4) label 1: -ln(1/4) = 1.386294 -> CE = 1.039721.
    # Entropy term over M_H only, divided by log V = ln 2: 0.693147 / 0.693147 = 1.0 (>= 0.5 -> lambda_H x 0.95).
    # Penalty over M_KL only: 1.575960 (<= 2.0 -> lambda_KL x 0.95).
    # L = 1.039721 - 0.0475 * 1.0 + 0.0475 * 1.575960 = 1.067079
    assert out.loss.item() == pytest.approx(1.0670788557, abs=1e-9)
    assert out.mask.tolist() == [[False, True, False], [False, False, True]]
    assert out.metrics["lambda_entropy"] == pytest.approx(0.0475)
    assert out.metrics["lambda_kl"] == pytest.approx(0.0475)


def test_official_lambda_rule_raises_both():
    # One sequence, V = 2; a reference far from the policy: q = softmax([0, -12]) puts ~1 on token 0,
    # so log q1 = -12.000006.
    # Rows j = 1, 2: p0 = 1/32 (H = 0.139) and p0 = 1/64 (H = 0.082). Normalised entropy 0.139 / ln 2 = 0.20 < 0.5
    # -> lambda_H x 1.05. Penalty ~ p1 (p1 - log q1) ~ 0.97 * 12.97 > 2 -> lambda_KL x 1.05.
    logits = torch.tensor([[two_class(1 / 2), two_class(1 / 32), two_class(1 / 64)]], dtype=torch.float64)
    ref = torch.tensor([[[0.0, -12.0]] * 3], dtype=torch.float64)
    out = eksft_loss(logits, torch.tensor([[-100, 1, 1]]), ref, rho=0.5, variant="official")
    assert out.metrics["lambda_entropy"] == pytest.approx(0.0525)
    assert out.metrics["lambda_kl"] == pytest.approx(0.0525)
    assert out.metrics["entropy_term"] == pytest.approx(-(1 / 32 * LN(1 / 32) + 31 / 32 * LN(31 / 32)) / LN(2))


def test_uniform_logits_select_nothing():
    """All rows uniform: H = log V everywhere, a full tie, so the paper rank rule masks nothing; CE = log V."""
    V = 17
    logits = torch.zeros(2, 6, V, requires_grad=True)
    labels = torch.randint(0, V, (2, 6))
    out = eksft_loss(logits, labels, torch.zeros(2, 6, V), rho=0.3)
    assert not out.mask.any()
    assert out.loss.item() == pytest.approx(LN(V), rel=1e-6)
    assert out.metrics["entropy_mean"] == pytest.approx(LN(V), rel=1e-6)
    assert out.metrics["kl_mean"] == 0.0


def test_rho_zero_is_sft_exactly():
    logits, labels, ref = make_batch(seed=3)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    e, s = eksft_loss(a, labels, ref, rho=0.0), sft_loss(b, labels)
    e.loss.backward()
    s.loss.backward()
    assert torch.equal(e.loss, s.loss)
    assert torch.equal(a.grad, b.grad)
    assert not e.mask.any()


def test_policy_equals_reference():
    logits, labels, _ = make_batch(seed=4)
    out = eksft_loss(logits, labels, logits.clone(), rho=0.3)
    assert out.metrics["kl_term"] == 0.0 and out.metrics["kl_mean"] == 0.0
    assert out.metrics["kl_masked_fraction"] == 0.0  # all KL = 0 is one big tie: nothing selected
    assert out.metrics["entropy_masked_fraction"] > 0


def test_rho_one_union_masks_everything():
    logits, labels, ref = make_batch(seed=5)
    x = logits.clone().requires_grad_()
    out = eksft_loss(x, labels, ref, rho=1.0)
    valid = labels != -100
    valid[:, 0] = False
    assert torch.equal(out.mask, valid)
    assert out.metrics["ce"] == 0.0 and out.metrics["masked_fraction"] == 1.0
    expected = -0.05 * out.metrics["entropy_term"] + 0.05 * out.metrics["kl_term"]
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    out.loss.backward()
    assert torch.isfinite(x.grad).all()


def test_one_token_batch():
    """N = 1: k = ceil(0.2) = 1 and rank 1 <= 1, so the single target is masked (paper rule, no special case)."""
    logits = torch.randn(1, 2, 5, requires_grad=True)
    ref = torch.randn(1, 2, 5)
    out = eksft_loss(logits, torch.tensor([[-100, 3]]), ref)
    assert out.mask.tolist() == [[False, True]]
    out.loss.backward()
    assert torch.isfinite(out.loss) and logits.grad[0, 1].abs().sum() == 0  # row 1 scores nothing


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_no_valid_target_is_zero_with_zero_grad(variant):
    logits = torch.randn(2, 4, 7, requires_grad=True)
    out = eksft_loss(logits, torch.full((2, 4), -100), torch.randn(2, 4, 7), variant=variant)
    assert out.loss.item() == 0.0
    out.loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    assert not out.mask.any() and out.metrics["num_targets"] == 0.0


def test_bf16_inputs_give_fp32_statistics():
    logits, labels, ref = make_batch(seed=6)
    lo = eksft_loss(logits.bfloat16(), labels, ref.bfloat16())
    hi = eksft_loss(logits.bfloat16().float(), labels, ref.bfloat16().float())
    assert lo.loss.dtype == torch.float32
    assert lo.loss.item() == pytest.approx(hi.loss.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------------------------ EAFT
@pytest.mark.parametrize(
    "kw,w",
    [
        ({"normalizer": "ln_k"}, 1.0),
        ({"entropy": "full"}, 1.0),
        ({"topk": 2, "alpha": 3.0, "normalizer": "ln_k"}, 1.0),
        ({}, LN(5) / 3),  # the authors' divisor: top-min(20, V) entropy ln 5, over 3.0
        ({"topk": 2, "alpha": 3.0}, (LN(2) / 3) ** 3),
    ],
)
def test_eaft_uniform_logits(kw, w):
    """Uniform rows have the largest entropy, ln k of the top-k softmax: h = 1 over ln k or ln V (EAFT is SFT: loss
    ln V, same gradient), h = ln k / 3 over the authors' 3.0 (SFT scaled by h^alpha)."""
    a, b = torch.zeros(2, 4, 5, dtype=torch.float64, requires_grad=True), torch.zeros(2, 4, 5, dtype=torch.float64)
    b.requires_grad_(True)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 0, 4]])
    out = eaft_loss(a, labels, **kw)
    assert out.loss.item() == pytest.approx(w * LN(5), rel=1e-12) and out.metrics["weight_mean"] == pytest.approx(w)
    out.loss.backward()
    sft_loss(b, labels).loss.backward()
    torch.testing.assert_close(a.grad, w * b.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "kw,h",
    [
        # p = (1/2, 1/6, 1/6, 1/6): H = ln 2 / 2 + ln 6 / 2, over ln 4
        ({"entropy": "full"}, (LN(2) / 2 + LN(6) / 2) / LN(4)),
        # top 2 logits (ln 3, 0): softmax (3/4, 1/4), over the authors' 3.0 (default) or ln 2
        ({"topk": 2}, -(3 / 4 * LN(3 / 4) + 1 / 4 * LN(1 / 4)) / 3),
        ({"topk": 2, "normalizer": "ln_k"}, -(3 / 4 * LN(3 / 4) + 1 / 4 * LN(1 / 4)) / LN(2)),
        # top 3 logits (ln 3, 0, 0): softmax (3/5, 1/5, 1/5), over ln 3
        ({"topk": 3, "alpha": 2.0, "normalizer": "ln_k"}, (-(3 / 5 * LN(3 / 5) + 2 / 5 * LN(1 / 5)) / LN(3)) ** 2),
        # all 4 logits (the default k = min(20, V)): p itself, over 3.0
        ({}, (LN(2) / 2 + LN(6) / 2) / 3),
        ({"alpha": 0.0}, 1.0),
    ],
)
def test_eaft_hand_worked(kw, h):
    """One target, row (ln 3, 0, 0, 0) so p = (1/2, 1/6, 1/6, 1/6), label 1: loss h^alpha * ln 6, logit gradient
    h^alpha (p - e_1) (the weight is detached)."""
    logits = torch.tensor([[[LN(3), 0.0, 0.0, 0.0], [0.0] * 4]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[-100, 1]])
    out = eaft_loss(logits, labels, **kw)
    assert out.loss.item() == pytest.approx(h * LN(6), rel=1e-12)
    out.loss.backward()
    expected = torch.tensor([1 / 2, 1 / 6 - 1, 1 / 6, 1 / 6], dtype=torch.float64) * h
    torch.testing.assert_close(logits.grad[0, 0], expected, rtol=1e-12, atol=1e-14)
    assert torch.count_nonzero(logits.grad[0, 1]) == 0
