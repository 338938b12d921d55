"""Pick the best answer span from start/end logits of one tokenised window.

Shared by the reader at inference time and by training-time evaluation, so both
score answers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpanCandidate:
    """A span inside one window: token indices, character offsets and its logit score."""

    start_token: int
    end_token: int
    start_char: int
    end_char: int
    logit: float


def best_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: list[tuple[int, int]] | np.ndarray,
    context_mask: np.ndarray,
    max_answer_tokens: int = 30,
) -> SpanCandidate | None:
    """Return the highest scoring span (start <= end, bounded length) inside the context tokens.

    Vectorised over all start/end pairs: a band matrix of allowed (start, end) pairs
    is cheaper than Python loops over the top-k, and exact.
    """
    idx = np.flatnonzero(context_mask)
    if idx.size == 0:
        return None
    s = start_logits[idx].astype(np.float64)
    e = end_logits[idx].astype(np.float64)
    n = idx.size
    scores = s[:, None] + e[None, :]
    rows = np.arange(n)[:, None]
    cols = np.arange(n)[None, :]
    allowed = (cols >= rows) & (cols - rows < max_answer_tokens)
    # Context tokens must be contiguous in the window for the band to be meaningful.
    scores = np.where(allowed, scores, -np.inf)
    flat = int(np.argmax(scores))
    i, j = divmod(flat, n)
    start_token, end_token = int(idx[i]), int(idx[j])
    return SpanCandidate(
        start_token=start_token,
        end_token=end_token,
        start_char=int(offsets[start_token][0]),
        end_char=int(offsets[end_token][1]),
        logit=float(scores[i, j]),
    )
