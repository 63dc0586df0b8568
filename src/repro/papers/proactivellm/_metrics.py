"""The measures evaluate computes on the whole test set and analysis on resampled test items, so both
compute them one way: output quality in [0, 1] from per-item statistics (corpus BLEU / 100 from each
sentence's n-gram counts, sacrebleu's, summed; or exact-match accuracy from each item's 0/1), and
the AUROC of a score for a label with per-state weights (a resample's item counts)."""
from __future__ import annotations

import numpy as np


def item_stats(metric: str, hyps: list[str], refs: list[str]) -> np.ndarray:
    """[items, K]: BLEU: hypothesis length, reference length, matched and total n-grams (n = 1..4);
    accuracy: 1 when the hypothesis equals the reference."""
    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        bleu = BLEU(force=True)  # force: our references are space-separated words already
        rows = []
        for h, r in zip(hyps, refs):
            s = bleu.sentence_score(h, [r])
            rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
        return np.asarray(rows, dtype=float).reshape(len(hyps), 10)
    return np.asarray([[float(h == r)] for h, r in zip(hyps, refs)]).reshape(len(hyps), 1)


def from_sums(metric: str, sums: np.ndarray, n: float) -> np.ndarray:
    """Quality of sets of `n` items whose statistics sum to each row of `sums` [R, K] (corpus BLEU is
    not a mean of sentence scores: the n-gram counts are summed first, then sacrebleu's formula)."""
    sums = np.atleast_2d(sums)
    if metric == "bleu":
        from sacrebleu.metrics import BLEU

        rows = np.rint(sums).astype(np.int64).tolist()
        return np.array([BLEU.compute_bleu(r[2:6], r[6:10], r[0], r[1], smooth_method="exp").score / 100
                         for r in rows])
    return sums[:, 0] / n


def resampled_auroc(scores: np.ndarray, labels: np.ndarray, items: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of `scores` for `labels` (ties count half) when every state of item i counts
    counts[r, i] times: one value per row of `counts` [R, items] (nan without both labels). The
    (positive item, negative item) pair counts are computed once; each resample is then two
    products. Numpy only: sklearn would add a second of imports to every evaluate job."""
    n_items = counts.shape[1]
    labels = labels.astype(bool)
    pos_s, pos_item = scores[labels], items[labels]
    pairs = np.zeros((n_items, n_items))  # [i, j]: positives of item i scored above negatives of item j
    for j in np.unique(items[~labels]):
        neg = np.sort(scores[~labels & (items == j)])
        below, upto = np.searchsorted(neg, pos_s, "left"), np.searchsorted(neg, pos_s, "right")
        pairs[:, j] = np.bincount(pos_item, weights=below + 0.5 * (upto - below), minlength=n_items)
    n_pos = np.bincount(pos_item, minlength=n_items)
    n_neg = np.bincount(items[~labels], minlength=n_items)
    den = (counts @ n_pos) * (counts @ n_neg)
    num = np.einsum("ri,ij,rj->r", counts, pairs, counts)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auroc(scores: np.ndarray, labels: np.ndarray, items: np.ndarray) -> float | None:
    """AUROC over every state once; None when the states do not have both labels."""
    value = resampled_auroc(np.asarray(scores), np.asarray(labels), items, np.ones((1, int(items.max()) + 1)))[0]
    return None if np.isnan(value) else float(value)
