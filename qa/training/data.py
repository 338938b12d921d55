"""Load SQuAD-v2 style files, mix domains, add negatives, and tokenise into training windows."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: Share of each file's questions drawn into one pass over the mix (a fresh seeded draw every
#: pass, so over several passes every question is seen). Wikipedia-style files and real search
#: queries, closest to what users ask of their documents, count whole; narrow domains (privacy
#: policies, TV dialogue, chat logs, reviews) are weighted down so that they do not dominate.
#: A weight above 1 repeats a file within a pass (2.5: every question twice, half of them thrice).
SOURCE_WEIGHTS: dict[str, float] = {
    "squadshifts_reddit": 0.35,
    "squadshifts_amazon": 0.35,
    "policyqa": 0.2,
    "friendsqa": 0.3,
    "molweni": 0.25,
    "tweetqa": 0.6,
    # SQuAD v1.0 train (87,621 questions) outnumbers every other file together: whole, it would be
    # 68% of a pass and wash out news, narrow domains and the unanswerable questions. A quarter per
    # pass makes it 35% (29,800 of 85,600 windows), every question seen once in four passes.
    "squad_v1_train": 0.25,
}


def source_weight(text: str) -> tuple[str, float]:
    """A `SOURCE=WEIGHT` command-line override of `SOURCE_WEIGHTS` (e.g. `nq_qed_train=2`)."""
    name, _, value = text.partition("=")
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if not name.strip() or weight < 0:
        raise argparse.ArgumentTypeError(f"expected SOURCE=WEIGHT with a weight >= 0 (e.g. nq_qed_train=2), not {text!r}")
    return name.strip(), weight


def source_weights(overrides: list[tuple[str, float]]) -> dict[str, float]:
    """`SOURCE_WEIGHTS` with a run's `--weight` overrides."""
    return {**SOURCE_WEIGHTS, **dict(overrides)}


#: Share of answerable questions also paired with a passage a retriever returns for them
#: (BM25 over the same file) that lacks the answer: the negatives `answer()` really shows the reader.
HARD_NEGATIVE_RATE = 0.3
#: Share of paragraphs held out (by a stable hash) for calibration and threshold tuning.
HOLDOUT_RATE = 0.04


@dataclass(frozen=True)
class QAExample:
    """One question over one context; `answers` is empty when the context does not answer it."""

    id: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]
    source: str
    title: str = ""

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def load_squad(path: str | Path) -> list[QAExample]:
    """Read a SQuAD-v1/v2 JSON file (optionally gzipped) into examples."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        payload = json.load(handle)
    source = path.name.split(".")[0]
    examples = []
    for article in payload["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = tuple(
                    (a["text"], int(a["answer_start"]))
                    for a in qa.get("answers", [])
                    if not qa.get("is_impossible", False)
                )
                examples.append(QAExample(str(qa["id"]), qa["question"], context, answers, source,
                                          str(article.get("title", ""))))
    return examples


def _is_holdout(context: str) -> bool:
    digest = hashlib.sha1(context.encode("utf-8")).digest()
    return digest[0] / 256 < HOLDOUT_RATE


def _contains_an_answer(context: str, example: QAExample) -> bool:
    lowered = context.lower()
    return any(text.lower() in lowered for text, _ in example.answers)


def add_hard_negatives(examples: list[QAExample], rate: float, rng: random.Random, depth: int = 8) -> list[QAExample]:
    """Pair some answerable questions with the best BM25 paragraph of their file that lacks the answer.

    Those are the passages retrieval puts in front of the reader next to (or instead of) the
    right one; random paragraphs would be too easy to reject.
    """
    import bm25s

    chosen = [ex for ex in examples if ex.answers and rng.random() < rate]
    if not chosen:
        return []
    contexts = list(dict.fromkeys(ex.context for ex in examples))
    if len(contexts) < 2:
        return []
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(contexts, stopwords="en", show_progress=False), show_progress=False)
    queries = bm25s.tokenize([ex.question for ex in chosen], stopwords="en", show_progress=False)
    ranked, _ = retriever.retrieve(queries, k=min(depth, len(contexts)), show_progress=False)
    negatives = []
    for ex, row in zip(chosen, ranked):
        for idx in row:
            other = contexts[int(idx)]
            if other != ex.context and not _contains_an_answer(other, ex):
                negatives.append(QAExample(ex.id + "-neg", ex.question, other, (), ex.source, ex.title))
                break
    return negatives


def build_mix(data_dir: str | Path, seed: int = 13) -> tuple[list[QAExample], list[QAExample]]:
    """Return (train, holdout): every question of every train file, plus hard negatives.

    Per-pass weights (`SOURCE_WEIGHTS`) are applied when batches are scheduled, not here,
    so no question is dropped for good.
    """
    rng = random.Random(seed)
    train: list[QAExample] = []
    holdout: list[QAExample] = []
    for path in sorted(Path(data_dir, "train").glob("*.json*")):
        examples = load_squad(path)
        source = examples[0].source if examples else path.name
        kept = [ex for ex in examples if not _is_holdout(ex.context)]
        held = [ex for ex in examples if _is_holdout(ex.context)]
        negatives = add_hard_negatives(kept, HARD_NEGATIVE_RATE, rng)
        held_negatives = add_hard_negatives(held, 0.5, rng)
        logger.info(
            "%s: %d train (+%d hard negatives), %d held out (+%d hard negatives)",
            source, len(kept), len(negatives), len(held), len(held_negatives),
        )
        train += kept + negatives
        holdout += held + held_negatives
    rng.shuffle(train)
    return train, holdout


def pass_selection(examples: list[QAExample], pass_index: int, seed: int,
                   weights: dict[str, float] | None = None) -> Counter[int]:
    """How often one pass uses each example: each source's weight (`SOURCE_WEIGHTS` unless given),
    the fractional part drawn afresh per pass."""
    weights = SOURCE_WEIGHTS if weights is None else weights
    rng = random.Random(f"{seed}-{pass_index}")
    by_source: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_source.setdefault(ex.source, []).append(i)
    selected: Counter[int] = Counter()
    for source, indices in sorted(by_source.items()):
        weight = weights.get(source, 1.0)
        for _ in range(int(weight)):
            selected.update(indices)
        selected.update(rng.sample(indices, round((weight - int(weight)) * len(indices))))
    return selected


@dataclass
class TrainWindow:
    """One tokenised window with its gold span in token positions (0, 0 means no answer here)."""

    input_ids: list[int]
    #: empty for models without token types (MPNet)
    token_type_ids: list[int]
    start_position: int
    end_position: int
    example: int = -1


def tokenize_for_training(
    examples: list[QAExample],
    tokenizer,
    max_length: int = 256,
    stride: int = 96,
    max_negative_windows: int = 1,
) -> list[TrainWindow]:
    """Cut each example into overlapping windows and label the gold span in each.

    Long contexts produce many windows without the answer; keeping at most
    `max_negative_windows` of them per example saves compute without losing the
    "no answer in this window" signal.
    """
    windows: list[TrainWindow] = []
    # A question must leave room for a context window of more than `stride` tokens.
    kept = [i for i, ex in enumerate(examples) if len(tokenizer.tokenize(ex.question)) < max_length - stride - 40]
    batch = 256
    for offset in range(0, len(kept), batch):
        chunk_ids = kept[offset : offset + batch]
        chunk = [examples[i] for i in chunk_ids]
        enc = tokenizer(
            [ex.question.strip() for ex in chunk],
            [ex.context for ex in chunk],
            truncation="only_second",
            max_length=max_length,
            stride=stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        negatives_seen: dict[int, int] = {}
        for i, example_index in enumerate(enc["overflow_to_sample_mapping"]):
            ex = chunk[example_index]
            seq_ids = enc.sequence_ids(i)
            offsets = enc["offset_mapping"][i]
            ctx_tokens = [t for t, s in enumerate(seq_ids) if s == 1]
            start_pos = end_pos = 0
            if ex.answers and ctx_tokens:
                text, char_start = ex.answers[0]
                char_end = char_start + len(text)
                first, last = ctx_tokens[0], ctx_tokens[-1]
                if offsets[first][0] <= char_start and offsets[last][1] >= char_end:
                    start_pos = next(t for t in ctx_tokens if offsets[t][1] > char_start)
                    end_pos = next(t for t in reversed(ctx_tokens) if offsets[t][0] < char_end)
            if start_pos == 0:
                seen = negatives_seen.get(example_index, 0)
                if ex.answers and seen >= max_negative_windows:
                    continue
                if not ex.answers and seen >= max_negative_windows + 1:
                    continue
                negatives_seen[example_index] = seen + 1
            windows.append(
                TrainWindow(
                    list(enc["input_ids"][i]),
                    list(enc["token_type_ids"][i]) if "token_type_ids" in enc else [],
                    start_pos,
                    end_pos,
                    chunk_ids[example_index],
                )
            )
    return windows
