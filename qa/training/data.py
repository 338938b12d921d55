"""Load SQuAD-v2 style files, mix domains, add negatives, and tokenise into training windows."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: Training on two CPU cores affords about 30k windows in a session, so Wikipedia-style files
#: (closest to the documents users index) are kept whole and the rest is capped.
#: Narrow-domain files are capped so that they do not dominate the mix (questions kept per file).
DOMAIN_CAPS: dict[str, int] = {
    "squadshifts_reddit": 2000,
    "squadshifts_amazon": 2000,
    "policyqa": 600,
    "friendsqa": 400,
    "molweni": 500,
}
#: Share of answerable questions that also appear paired with a foreign paragraph as a negative.
NEGATIVE_RATE = 0.1
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
                examples.append(QAExample(str(qa["id"]), qa["question"], context, answers, source))
    return examples


def _is_holdout(context: str) -> bool:
    digest = hashlib.sha1(context.encode("utf-8")).digest()
    return digest[0] / 256 < HOLDOUT_RATE


def add_negatives(examples: list[QAExample], rate: float, rng: random.Random) -> list[QAExample]:
    """Pair some answerable questions with another paragraph of the same file that lacks the answer."""
    contexts_by_source: dict[str, list[str]] = {}
    for ex in examples:
        contexts_by_source.setdefault(ex.source, [])
        if not contexts_by_source[ex.source] or contexts_by_source[ex.source][-1] != ex.context:
            contexts_by_source[ex.source].append(ex.context)
    negatives = []
    for ex in examples:
        if ex.is_impossible or rng.random() >= rate:
            continue
        pool = contexts_by_source[ex.source]
        for _ in range(5):
            other = rng.choice(pool)
            answer_texts = [text.lower() for text, _ in ex.answers]
            if other != ex.context and not any(t in other.lower() for t in answer_texts):
                negatives.append(QAExample(ex.id + "-neg", ex.question, other, (), ex.source))
                break
    return negatives


def build_mix(data_dir: str | Path, seed: int = 13) -> tuple[list[QAExample], list[QAExample]]:
    """Return (train, holdout): every train file, capped narrow domains, plus synthetic negatives."""
    rng = random.Random(seed)
    train: list[QAExample] = []
    holdout: list[QAExample] = []
    for path in sorted(Path(data_dir, "train").glob("*.json*")):
        examples = load_squad(path)
        source = examples[0].source if examples else path.name
        cap = DOMAIN_CAPS.get(source)
        if cap is not None and len(examples) > cap:
            examples = rng.sample(examples, cap)
        kept = [ex for ex in examples if not _is_holdout(ex.context)]
        held = [ex for ex in examples if _is_holdout(ex.context)]
        negatives = add_negatives(kept, NEGATIVE_RATE, rng)
        held_negatives = add_negatives(held, 0.5, rng)
        logger.info(
            "%s: %d train (+%d negatives), %d held out (+%d negatives)",
            source, len(kept), len(negatives), len(held), len(held_negatives),
        )
        train += kept + negatives
        holdout += held + held_negatives
    rng.shuffle(train)
    return train, holdout


@dataclass
class TrainWindow:
    """One tokenised window with its gold span in token positions (0, 0 means no answer here)."""

    input_ids: list[int]
    token_type_ids: list[int]
    start_position: int
    end_position: int


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
    examples = [ex for ex in examples if len(tokenizer.tokenize(ex.question)) < max_length - stride - 40]
    batch = 256
    for offset in range(0, len(examples), batch):
        chunk = examples[offset : offset + batch]
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
                    list(enc["token_type_ids"][i]),
                    start_pos,
                    end_pos,
                )
            )
    return windows
