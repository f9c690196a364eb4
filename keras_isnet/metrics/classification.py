"""Classification metrics for multi-label models: per-label AUC and accuracy, in NumPy.

Keras' ``AUC(multi_label=True, num_labels=K)`` reports the mean over labels during
``evaluate``; these give each label's value, e.g. for a table per finding as in the ISNet
papers' chest X-ray results.

Example:
    >>> scores = isnet.predict(images)                 # logits (n, K)
    >>> ki.metrics.per_label_auc(labels, scores)       # (K,)
"""

from __future__ import annotations

import numpy as np

__all__ = ["per_label_accuracy", "per_label_auc"]


def _two_dimensional(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim == 1:
        labels = labels[:, None]
    if scores.ndim == 1:
        scores = scores[:, None]
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels {labels.shape} and scores {scores.shape} must have the same shape "
            "(n, K) (or (n,) for one label)."
        )
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must hold only 0 and 1 (one column per label).")
    return labels, scores


def per_label_auc(labels, scores) -> np.ndarray:
    """The area under the ROC curve of each label.

    The Mann-Whitney statistic: the probability that a positive sample scores higher than a
    negative one, ties counted one half (the same value as ``sklearn.metrics.roc_auc_score``
    per column). Any monotone score works: logits or probabilities.

    Args:
        labels: ``(n, K)`` (or ``(n,)``) 0/1 labels.
        scores: ``(n, K)`` (or ``(n,)``) scores, higher = more likely positive.

    Returns:
        ``(K,)`` float64; NaN for a label without both positive and negative samples.

    Raises:
        ValueError: shapes differ or labels are not 0/1.
    """
    labels, scores = _two_dimensional(labels, scores)
    out = np.full(labels.shape[1], np.nan)
    for j in range(labels.shape[1]):
        positive = labels[:, j] == 1
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        # average ranks (ties share their mean rank)
        order = np.argsort(scores[:, j], kind="mergesort")
        sorted_scores = scores[order, j]
        ranks = np.empty(len(order))
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and sorted_scores[end + 1] == sorted_scores[start]:
                end += 1
            ranks[order[start : end + 1]] = 0.5 * (start + end) + 1.0
            start = end + 1
        out[j] = (ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return out


def per_label_accuracy(labels, logits, threshold: float = 0.0) -> np.ndarray:
    """The accuracy of each label: ``mean((logits > threshold) == labels)``.

    Args:
        labels: ``(n, K)`` (or ``(n,)``) 0/1 labels.
        logits: ``(n, K)`` (or ``(n,)``) logits; ``threshold`` 0 (default) is probability 0.5.
        threshold: the decision threshold on the logits.

    Returns:
        ``(K,)`` float64.
    """
    labels, logits = _two_dimensional(labels, logits)
    return np.mean((logits > threshold) == (labels == 1), axis=0)
