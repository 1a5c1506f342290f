"""Brute-force, per-token implementations of every loss written independently of eksft.losses.

Everything is an explicit Python loop over (batch, position) with textbook formulas, so a shared bug between the
library and these loops would need the same mistake written twice in different styles.
"""

from __future__ import annotations

import math

import torch


def targets(labels, ignore=-100):
    """[(b, j)] for every scored label: j >= 1 and label != ignore."""
    B, T = labels.shape
    return [(b, j) for b in range(B) for j in range(1, T) if int(labels[b, j]) != ignore]


def probs(row):
    row = row.double() if row.dtype == torch.float64 else row.float()
    e = torch.exp(row - row.max())
    return e / e.sum()


def logp_of(row, y):
    return torch.log(probs(row)[y])


def entropy(row):
    p = probs(row)
    return -(p * torch.log(p)).sum()


def kl(row, ref_row):
    p, q = probs(row), probs(ref_row).detach()
    return (p * (torch.log(p) - torch.log(q))).sum()


def paper_topk(values, rho):
    """Eq. 6-7 literally: rank(t) = #{i: v_i >= v_t}; keep rank <= k, k = ceil(rho * n)."""
    n = len(values)
    k = math.ceil(rho * n - 1e-9)
    return [sum(1 for v in values if v >= values[t]) <= k for t in range(n)]


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def unit(logits, entropy_unit):
    """What one nat of entropy counts for under lambda_H: 1 / ln V (normalised, the authors' unit) or 1 (nats)."""
    return 1.0 / math.log(logits.shape[-1]) if entropy_unit == "normalized" else 1.0


def eksft_paper(
    logits,
    labels,
    ref,
    rho=0.2,
    lam_h=0.05,
    lam_kl=0.05,
    selection="union",
    scope="micro_batch",
    entropy_unit="normalized",
):
    tg = targets(labels)
    H = [entropy(logits[b, j - 1]) for b, j in tg]
    K = [kl(logits[b, j - 1], ref[b, j - 1]) for b, j in tg]
    LP = [logp_of(logits[b, j - 1], labels[b, j]) for b, j in tg]
    hv, kv = [float(h.detach()) for h in H], [float(k.detach()) for k in K]
    if scope == "micro_batch":
        mh, mk = paper_topk(hv, rho), paper_topk(kv, rho)
    else:  # per sequence
        mh, mk = [False] * len(tg), [False] * len(tg)
        for b in sorted({b for b, _ in tg}):
            idx = [i for i, (bb, _) in enumerate(tg) if bb == b]
            for i, s in zip(idx, paper_topk([hv[i] for i in idx], rho)):
                mh[i] = s
            for i, s in zip(idx, paper_topk([kv[i] for i in idx], rho)):
                mk[i] = s
    op = {
        "union": lambda a, b: a or b,
        "intersection": lambda a, b: a and b,
        "entropy": lambda a, b: a,
        "kl": lambda a, b: b,
    }[selection]
    m = [op(a, b) for a, b in zip(mh, mk)]
    ce = mean([-LP[i] for i in range(len(tg)) if not m[i]])
    lh = mean([H[i] * unit(logits, entropy_unit) for i in range(len(tg)) if m[i]])
    lk = mean([K[i] for i in range(len(tg)) if m[i]])
    mask = torch.zeros(labels.shape, dtype=torch.bool)
    for i, (b, j) in enumerate(tg):
        mask[b, j] = m[i]
    return ce - lam_h * lh + lam_kl * lk, mask


def eksft_official(logits, labels, ref, rho=0.2, lam_h=0.05, lam_kl=0.05, selection="union"):
    """The authors' code (their compute_loss, re-stated): statistics from row j (same position as label j); M_KL
    selected by the true KL of that row, the penalty sum_v p (p - log q) applied on M_KL."""
    tg = targets(labels)
    V = logits.shape[-1]
    H = [entropy(logits[b, j]) for b, j in tg]
    K = [float(kl(logits[b, j], ref[b, j]).detach()) for b, j in tg]
    P = [(probs(logits[b, j]) * (probs(logits[b, j]) - torch.log(probs(ref[b, j])).detach())).sum() for b, j in tg]
    LP = [logp_of(logits[b, j - 1], labels[b, j]) for b, j in tg]
    n = len(tg)
    k = math.floor(rho * n + 1e-9)

    def top(vals):  # no ties on random inputs, so any tie rule agrees
        order = sorted(range(n), key=lambda i: -vals[i])[:k]
        return [i in order for i in range(n)]

    mh, mk = top([float(h.detach()) for h in H]), top(K)
    m = [(a or b) if selection == "union" else (a and b) for a, b in zip(mh, mk)]
    ce = mean([-LP[i] for i in range(n) if not m[i]])
    ent = mean([H[i] / math.log(V) for i in range(n) if mh[i]])
    pen = mean([P[i] for i in range(n) if mk[i]])
    lh = lam_h * (1.05 if float(ent.detach()) < 0.5 else 0.95)
    lk = lam_kl * (1.05 if float(pen.detach()) > 2.0 else 0.95)
    return ce - lh * ent + lk * pen


def per_token(fn, logits, labels):
    tg = targets(labels)
    return mean([fn(b, j) for b, j in tg]) if tg else logits.sum() * 0


def sft(logits, labels):
    return per_token(lambda b, j: -logp_of(logits[b, j - 1], labels[b, j]), logits, labels)


def dft(logits, labels):
    def f(b, j):
        lp = logp_of(logits[b, j - 1], labels[b, j])
        return -torch.exp(lp).detach() * lp

    return per_token(f, logits, labels)


def iw_sft(logits, labels, ref, clip=16.0):
    tg = targets(labels)
    terms = []
    for b in sorted({b for b, _ in tg}):
        js = [j for bb, j in tg if bb == b]
        diffs = [
            float((logp_of(logits[b, j - 1], labels[b, j]) - logp_of(ref[b, j - 1], labels[b, j])).detach()) for j in js
        ]
        w = min(max(math.exp(sum(diffs) / len(diffs)), 0.0), clip)
        terms += [-w * logp_of(logits[b, j - 1], labels[b, j]) for j in js]
    return mean(terms)


def psft(logits, labels, old_logps, eps=0.28):
    def f(b, j):
        r = torch.exp(logp_of(logits[b, j - 1], labels[b, j]) - old_logps[b, j])
        return -torch.clamp(r, max=1 + eps)  # min(r, 1 + eps)

    return per_token(f, logits, labels)


def asft(logits, labels, ref, lam=0.1):
    def f(b, j):
        lp = logp_of(logits[b, j - 1], labels[b, j])
        q, p = probs(ref[b, j - 1]).detach(), probs(logits[b, j - 1])
        return -torch.exp(lp).detach() * lp + lam * (q * (torch.log(q) - torch.log(p))).sum()

    return per_token(f, logits, labels)


def gem(logits, labels, beta=0.7):
    def f(b, j):
        row = logits[b, j - 1]
        s = probs(row.detach() / beta)
        return -logp_of(row, labels[b, j]) + (s * torch.log(probs(row))).sum()

    return per_token(f, logits, labels)


def sed_sft(logits, labels, tau, lam=1.0, k=2):
    def f(b, j):
        row = logits[b, j - 1]
        p = probs(row)
        mass = sum(sorted(p.detach().tolist(), reverse=True)[:k])
        m = 1.0 if mass < tau else 0.0
        return -torch.log(p[labels[b, j]]) + lam * m * (p[labels[b, j]] - 0.5) ** 2

    return per_token(f, logits, labels)


def global_reg(logits, labels, ref, lam_h=0.05, lam_kl=0.05, entropy_unit="normalized"):
    def f(b, j):
        row = logits[b, j - 1]
        return (
            -logp_of(row, labels[b, j])
            - lam_h * unit(logits, entropy_unit) * entropy(row)
            + lam_kl * kl(row, ref[b, j - 1])
        )

    return per_token(f, logits, labels)


def random_mask_targets(labels, fraction, seed):
    """Random masking's documented draw: exactly ceil(fraction * n) of the n targets (in (batch, position) order),
    the first ones of a uniform random permutation from a CPU ``torch.Generator`` seeded with ``seed``."""
    tg = targets(labels)
    n = len(tg)
    k = min(n, math.ceil(fraction * n - 1e-9))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    mask = torch.zeros(labels.shape, dtype=torch.bool)
    for i in order[:k]:
        b, j = tg[i]
        mask[b, j] = True
    return mask


def random_mask(logits, labels, ref, fraction, seed, lam_h=0.05, lam_kl=0.05, entropy_unit="normalized"):
    """Random masking: the EKSFT objective on this module's own seeded mask; returns (loss, mask)."""
    mask = random_mask_targets(labels, fraction, seed)
    return masked(logits, labels, ref, mask, lam_h=lam_h, lam_kl=lam_kl, entropy_unit=entropy_unit), mask


def masked(logits, labels, ref, mask, lam_h=0.05, lam_kl=0.05, entropy_unit="normalized"):
    """The EKSFT objective for a given (B, T) mask (used by random masking)."""
    tg = targets(labels)
    ce = mean([-logp_of(logits[b, j - 1], labels[b, j]) for b, j in tg if not mask[b, j]])
    lh = mean([entropy(logits[b, j - 1]) * unit(logits, entropy_unit) for b, j in tg if mask[b, j]])
    lk = mean([kl(logits[b, j - 1], ref[b, j - 1]) for b, j in tg if mask[b, j]])
    return ce - lam_h * lh + lam_kl * lk


def eaft(logits, labels, alpha=1.0, entropy_kind="topk", k=20, normalizer="authors"):
    """EAFT: -h**alpha * log p(y), h detached: the entropy of the renormalised k largest probabilities over 3.0
    (the authors' constant) or over ln k (``normalizer="ln_k"``) (topk; softmax of the top-k logits is the same
    distribution), or the full entropy over ln V (full)."""
    V = logits.shape[-1]

    def f(b, j):
        row = logits[b, j - 1]
        if entropy_kind == "full":
            h = float(entropy(row).detach()) / math.log(V)
        else:
            kk = min(k, V)
            top = sorted(probs(row).detach().tolist(), reverse=True)[:kk]
            z = sum(top)
            h = -sum(p / z * math.log(p / z) for p in top) / (3.0 if normalizer == "authors" else math.log(kk))
        return -(h**alpha) * logp_of(row, labels[b, j])

    return per_token(f, logits, labels)
