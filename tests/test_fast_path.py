"""The fast inference paths answer like the plain fp32 torch path that reads every passage.

What is asserted (no timings here; benchmarks/run.py measures speed):

The seed-set comparisons use the fast reader (see `_engine`), except the screening check; the
dev-F1 check uses the default (accurate) reader, and one ONNX check the accurate reader.

* the default path (bf16 models where the CPU has bf16 instructions, adaptive reading) gives the
  same final answer, source and offsets for all 60 seed questions (measured: 60 of 60), and a
  seed-set F1 no lower; bf16 is forced in that test so CPUs without bf16 check it too.
* bf16 reader F1 on 300 Natural Questions dev questions (gold paragraph, always answering) is
  within 0.5 of fp32 (measured with the fast reader on all 1,263: 65.22 vs 65.26, 1,256
  identical answers); skipped where the training data is not on disk.
* bf16 embeddings have a cosine of at least 0.999 with fp32 ones (measured: 0.9999).

* `backend="onnx"` (fp32): the same best span, same text and same offsets, for every seed
  question with a gold answer. The best span is the answer, or the best suppressed one when
  the engine abstains, so the check does not depend on the threshold.
* `backend="onnx", quantize="int8"` changes scores a little, so it is held to agreement, not
  equality: the final answer or abstention is the same for at least `INT8_MIN_ANSWER_AGREEMENT`
  of all seed questions (52 of 60 with the fast reader v4b, 57 with v4; v4b's changes are six
  span boundaries among near-ties and two scores either side of the threshold), the seed-set F1
  drops by at most `INT8_MAX_F1_LOSS` (one question's worth; measured: +0.013 with v4b, no
  change with v4), and every int8 vector has a cosine of at least 0.95 with its fp32 counterpart
  (0.98 when written). Suppressed low-confidence guesses are not compared: int8 reorders
  near-ties among them (34 of 44 best spans agree).
* `backend="onnx"` with the accurate reader (MPNet: no token-type ids) reads as the torch path does.
* the plain embedder (no sentence-transformers import) gives the vectors sentence-transformers gives.
* screening (the default): the accurate reader reads one or two of the four seed passages that
  the fast reader picks (1.5 on average at most) and loses at most one question's worth of
  seed F1 against reading all four.
* windows of different lengths are read in batches padded only to their own longest, with the
  same spans and scores as reading each window alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from qa.config import Settings
from qa.metrics import best_over_golds, f1_score
from qa.pipeline import Engine

pytestmark = pytest.mark.slow  # real models

ROOT = Path(__file__).resolve().parents[1]
#: Most seed-set F1 (0-1 scale) that int8 quantisation may cost.
INT8_MAX_F1_LOSS = 0.02
#: Share of all seed questions whose final answer (or abstention) must be unchanged by int8.
INT8_MIN_ANSWER_AGREEMENT = 0.85
#: Least cosine between a bf16 and an fp32 embedding of the same text (measured: 0.9999).
BF16_MIN_COSINE = 0.999
#: Seed questions answered from the first two passages alone (measured: 28 of 60 with the fast
#: reader v4b; 26 with v3, 31 when any answer above the threshold stopped the reading).
MIN_QUESTIONS_READ_BRIEFLY = 21
#: Passages the accurate reader reads per seed question it answers without reading all four, on
#: average, when the fast one screens them (measured: 1.1).
MAX_SCREENED_PASSAGES_READ = 1.5
#: Most seed-set F1 screening may cost against reading every passage (one question's worth;
#: measured: +0.007, 0.851 against 0.844 with the fast reader v4b screening; +0.024 with v4).
SCREENING_MAX_F1_LOSS = 0.02
#: Seed questions (of 60) whose final answer the fast default may change, each only between near-tied spans.
MAX_CHANGED_ANSWERS = 2
#: Largest score gap between two spans that bf16 rounding may swap ("to preventing further aggression"
#: 0.579 in bf16 against "preventing further aggression" 0.580 in fp32, fast reader v4).
NEAR_TIE = 0.01
#: Most seed-set F1 the fast default may lose against fp32 reading every passage: one near-tie's
#: worth (the swap above costs 0.0024).
FAST_DEFAULT_MAX_F1_LOSS = 0.005
#: The dev set of the reader's training data (not shipped; the test is skipped without it).
DEV_SET = Path(os.environ.get("QA_TRAINING_DATA", ROOT.parent / "shared" / "data" / "qa")) / "dev" / "nq_qed_dev.json.gz"
DEV_QUESTIONS = 300


def _questions(answerable: bool = True) -> list[dict]:
    lines = (ROOT / "eval" / "seed_questions.jsonl").read_text(encoding="utf-8").splitlines()
    return [q for q in (json.loads(line) for line in lines if line.strip()) if q["answers"] or not answerable]


def _best(answer) -> tuple[str, str | None, int | None]:
    best = answer if answer.text else (answer.alternatives[0] if answer.alternatives else answer)
    return best.text, best.source, best.start


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("fast")
    shutil.copytree(ROOT / "seeds", work / "seeds")
    return work


def _engine(corpus: Path, name: str, **settings) -> Engine:
    """An engine on the seed copy; reads every retrieved passage unless `read_first` is given.

    The fast reader answers here: the agreement figures above were measured with it, and its
    ~25 ms windows keep these whole-seed-set comparisons affordable on CI's CPUs. Adaptive
    reading stops early only on an answer scoring at least `read_more_below` (0.5): with the
    accurate reader (the default) stopping at the threshold alone changed seed answers for the
    worse ("British" instead of "Sky News": 0.40 from the first two passages, 0.82 from all four)."""
    settings.setdefault("read_first", 0)
    settings.setdefault("reader", "fast")
    return Engine(Settings.load(corpus_dir=str(corpus / "seeds"), index_dir=str(corpus / f"index-{name}"),
                                model_cache_dir=str(corpus / "onnx-cache"), **settings))


@pytest.fixture(scope="module")
def plain(corpus: Path) -> list:
    """Answers of the plain path to every seed question (answerable ones first)."""
    engine = _engine(corpus, "plain", backend="torch", quantize="none", precision="fp32")
    return [engine.answer(q["question"]) for q in _all_questions()]


def _seed_f1(answers: list, golds: list[list[str]]) -> float:
    """Mean F1 as `qa eval` scores it: abstaining is right exactly when there is no gold answer."""
    return float(np.mean([best_over_golds(f1_score, a.text, g) if g else float(not a.text)
                          for a, g in zip(answers, golds)]))


def _all_questions() -> list[dict]:
    answerable = _questions()
    return answerable + [q for q in _questions(answerable=False) if not q["answers"]]


def test_onnx_fp32_gives_the_same_best_spans(corpus: Path, plain: list) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    engine = _engine(corpus, "onnx", backend="onnx", quantize="none")
    fast = [engine.answer(q["question"]) for q in _all_questions()]
    assert [_best(a) for a in fast] == [_best(a) for a in plain]
    assert [a.text for a in fast] == [a.text for a in plain]
    for a, b in zip(fast, plain):
        assert abs(a.score - b.score) < 1e-3


def test_onnx_int8_mostly_agrees(corpus: Path, plain: list) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    engine = _engine(corpus, "int8", backend="onnx", quantize="int8")
    questions = [q["question"] for q in _all_questions()]
    fast = [engine.answer(q) for q in questions]
    same_answer = np.mean([a.text == b.text for a, b in zip(fast, plain)])
    assert same_answer >= INT8_MIN_ANSWER_AGREEMENT
    golds = [q["answers"] for q in _all_questions()]
    assert _seed_f1(fast, golds) >= _seed_f1(plain, golds) - INT8_MAX_F1_LOSS
    texts = [h.passage.text for h in plain[0].hits]
    fp32 = _engine(corpus, "plain", backend="torch", quantize="none", precision="fp32").embedder.encode(questions + texts)
    int8 = engine.embedder.encode(questions + texts)
    assert float(np.min(np.sum(fp32 * int8, axis=1))) > 0.95


def test_plain_embedder_matches_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    from qa import models
    from qa.embedding import Embedder

    texts = [q["question"] for q in _questions()[:10]] + [(ROOT / "seeds" / "000_b6ab0304c308f14d.txt").read_text()]
    ours = Embedder(precision="fp32").encode(texts)
    reference = SentenceTransformer(models.default_embedding_model_path(), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    bf16 = Embedder(precision="bf16").encode(texts)
    assert float(np.min(np.sum(bf16 * reference, axis=1))) > BF16_MIN_COSINE


def test_models_run_in_bf16_by_default_where_the_cpu_has_it(corpus: Path) -> None:
    import torch

    from qa import accel

    engine = _engine(corpus, "plain")
    expected = torch.bfloat16 if accel.native_bf16() else torch.float32
    assert engine.reader.model.dtype == expected
    assert engine.embedder.load().transformer.dtype == expected
    with pytest.raises(ValueError, match="QA_PRECISION"):
        _engine(corpus, "plain", precision="fp16").reader


def test_fast_default_gives_the_same_final_answers(corpus: Path, plain: list) -> None:
    """bf16 and adaptive reading (the defaults) against fp32 reading every passage."""
    engine = _engine(corpus, "fast", read_first=Settings().read_first, precision="bf16")
    fast = [engine.answer(q["question"]) for q in _all_questions()]
    golds = [q["answers"] for q in _all_questions()]
    # bf16 rounding may flip two near-tied spans ("Kyiv's control" / "under Kyiv's control", 0.674 /
    # 0.679), either way: a changed answer is allowed only rarely and only between near ties, so
    # adaptive reading never stops on an answer that reading on would have beaten clearly.
    changed = [(a, b) for a, b in zip(fast, plain) if (a.text, a.source, a.start) != (b.text, b.source, b.start)]
    assert len(changed) <= MAX_CHANGED_ANSWERS, [(b.text, a.text) for a, b in changed]
    for a, b in changed:
        assert abs(a.score - b.score) <= NEAR_TIE, (b.question, b.text, b.score, a.text, a.score)
    assert _seed_f1(fast, golds) >= _seed_f1(plain, golds) - FAST_DEFAULT_MAX_F1_LOSS
    # adaptive reading stops after two passages whenever it is sure, and reads everything otherwise
    sure = [a for a in fast if len(a.passages_read) < len(a.hits)]
    assert len(sure) >= MIN_QUESTIONS_READ_BRIEFLY
    bar = max(engine.settings.read_more_below, engine.default_threshold)
    assert bar == 0.5  # the defaults: sure means better than even odds, not just above the threshold
    assert all(a.passages_read == [0, 1] and a.score >= bar for a in sure)
    assert all(a.passages_read == list(range(len(a.hits))) for a in fast if a.abstained)


def test_screening_lets_the_accurate_reader_read_one_or_two_passages_and_all_only_before_abstaining(corpus: Path) -> None:
    """The default: the fast reader skims every passage, the accurate one reads the passage it
    picks (and retrieval's first when unsure), and reads the rest only before abstaining.
    Against the accurate reader reading all four seed passages, measured: 38 of 60 questions
    answered from 1.1 passages instead of 4, seed F1 0.851 against 0.844."""
    screened = _engine(corpus, "plain", reader="accurate", read_first=Settings().read_first)
    assert screened.settings.screen_with == "fast" and screened.screener_for() is screened.reader_for("fast")
    everything = _engine(corpus, "plain", reader="accurate", screen_with="none")
    golds = [q["answers"] for q in _all_questions()]
    short = [screened.answer(q["question"]) for q in _all_questions()]
    full = [everything.answer(q["question"]) for q in _all_questions()]
    assert all(len(a.hits) == 4 for a in short) and all(a.passages_read == [0, 1, 2, 3] for a in full)
    brief = [a for a in short if len(a.passages_read) <= 2]
    assert all(not a.abstained for a in brief)
    assert np.mean([len(a.passages_read) for a in brief]) <= MAX_SCREENED_PASSAGES_READ
    # a second passage is read only after an unsure answer, and it is retrieval's first
    assert all(a.passages_read[1] == 0 and a.alternatives for a in brief if len(a.passages_read) == 2)
    # otherwise the reader reads on, the pick and retrieval's first before the rest, and abstains
    # only then: the 16 out-of-scope questions and 5 others; 1-2 answers turn up only that late
    # ("a ceasefire", 0.47, to "What does Kyiv see as a way to stop Moscow's leader ...?")
    rest = [a for a in short if len(a.passages_read) > 2]
    assert all(sorted(a.passages_read) == [0, 1, 2, 3] and 0 in a.passages_read[:2] for a in rest)
    assert sum(a.abstained for a in rest) >= 16 and any(not a.abstained for a in rest)
    assert _seed_f1(short, golds) >= _seed_f1(full, golds) - SCREENING_MAX_F1_LOSS


def test_windows_are_batched_by_length_longest_first() -> None:
    from qa.reader import length_batches

    lengths = np.array([194, 85, 198, 207, 256, 256, 256, 80, 170])
    batches = [b.tolist() for b in length_batches(lengths, batch_size=2)]
    # full batches close at 2 windows; 170 < 0.9 * 194 starts a batch of its own, 80 >= 0.9 * 85 joins
    assert batches == [[4, 5], [6], [3, 2], [0], [8], [1, 7]]


def test_reading_passages_together_scores_them_as_reading_each_alone(corpus: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of 85 to 256 tokens share batches (padded only to their longest); no context is cut."""
    engine = _engine(corpus, "plain", precision="fp32")
    engine.ensure_index(progress=False)
    monkeypatch.setattr(engine.reader, "batch_size", 2)  # the reader is cached and shared: restore it after
    question = "What did Zelenskyy urge NATO to extend immediately?"
    texts = [p.text for p in engine.store.passages] + ["Zelenskyy urged NATO to act. " * 60]
    together = {r.text_index: r for r in engine.reader.read(question, texts)}
    assert len(together) == len(texts) and engine.reader.count_windows(question, texts[-1]) >= 2
    for i, text in enumerate(texts):
        alone = engine.reader.read(question, [text])[0]
        assert (together[i].start, together[i].end) == (alone.start, alone.end)
        assert together[i].margin == pytest.approx(alone.margin, abs=1e-3)


@pytest.mark.skipif(not DEV_SET.exists(), reason=f"needs the training data's dev set at {DEV_SET}")
def test_bf16_reader_keeps_dev_f1() -> None:
    """Gold paragraphs of real search queries (Natural Questions), always answering: bf16 within 0.5 F1 of fp32."""
    from qa.reader import Reader
    from qa.training.data import load_squad

    examples = load_squad(DEV_SET)[:DEV_QUESTIONS]
    scores = {}
    for precision in ("fp32", "bf16"):
        reader = Reader(precision=precision)
        predictions = []
        for ex in examples:
            spans = reader.read(ex.question, [ex.context])
            predictions.append(ex.context[spans[0].start : spans[0].end] if spans else "")
        scores[precision] = 100 * np.mean([best_over_golds(f1_score, pred, [a[0] for a in ex.answers])
                                           for pred, ex in zip(predictions, examples)])
    assert scores["bf16"] >= scores["fp32"] - 0.5, scores


def test_onnx_reads_with_the_accurate_reader_which_has_no_token_types(corpus: Path) -> None:
    """MPNet takes no token-type ids, so its exported graph has no such input: the session is fed
    only the inputs the graph declares, and answers as the torch path does."""
    question, context = "Who is bringing the cake?", "Anna is bringing the cake on Saturday."
    onnx = _engine(corpus, "onnx-accurate", backend="onnx", quantize="none", reader="accurate")
    torch_path = _engine(corpus, "plain-accurate", backend="torch", precision="fp32", reader="accurate")
    got, expected = onnx.read(question, context), torch_path.read(question, context)
    assert (got.text, got.start, got.end) == (expected.text, expected.start, expected.end) == ("Anna", 0, 4)
    assert abs(got.score - expected.score) < 0.01
