"""Evaluation metrics and diagnoses checked against hand-computed values (no models loaded),
plus one slow end-to-end run on the seed corpus."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qa.config import Settings
from qa.evaluation import diagnosis as dg
from qa.evaluation import metrics as m
from qa.evaluation.records import QuestionRecord, load_items, load_report_records
from qa.types import Answer, Hit, Passage

ROOT = Path(__file__).resolve().parents[1]
SEED_ARTICLE = "000_b6ab0304c308f14d.txt"


def rec(id, golds, prediction, best, score, latency, gold_rank=None, hit_gold_rank=None, **extra) -> QuestionRecord:
    return QuestionRecord(
        id=id, question=f"question {id}?", kind=extra.pop("kind", "factual"), golds=golds,
        prediction=prediction, best_span=best, score=score, latency=latency, threshold=0.5,
        retrieval_evaluated=extra.pop("retrieval_evaluated", True), gold_rank=gold_rank,
        hit_gold_rank=hit_gold_rank, reader_k=5, retrieval_depth=50, **extra,
    )


@pytest.fixture
def records() -> list[QuestionRecord]:
    """Eight questions at threshold 0.5, one per outcome (see each comment)."""
    return [
        rec("r1", ["Stuart Ramsay"], "Stuart Ramsay", "Stuart Ramsay", 0.9, 0.1, 1, 1),  # exact
        rec("r2", ["the hot phase of the war"], "hot phase", "hot phase", 0.7, 0.2, 2, 2),  # wrong span, F1 2/3
        rec("r3", ["Donald Trump"], "", "Donald Trump", 0.3, 0.3, 1, 1),  # suppressed
        rec("r4", ["NATO membership"], "Kyiv", "Kyiv", 0.6, 0.4, 7, None),  # not retrieved
        rec("r5", [], "", "Putin", 0.2, 0.5, kind="unanswerable-near"),  # correct abstention
        rec("r6", [], "Sky News", "Sky News", 0.8, 0.6, kind="unanswerable-far"),  # false answer
        rec("r7", ["diplomatic means"], "", "NATO", 0.4, 0.7, None, None,
            gold_in_passages=False, gold_in_documents=True),  # cut by boundary
        rec("r8", ["ideas"], "", "", 0.0, 0.8, None, None,
            gold_in_passages=False, gold_in_documents=False),  # not in corpus
    ]


# --- per-record scores -----------------------------------------------------------------------


def test_record_scores(records):
    by_id = {r.id: r for r in records}
    assert [r.em for r in records] == [1, 0, 0, 0, 1, 0, 0, 0]
    assert by_id["r2"].f1 == pytest.approx(2 / 3)  # {hot, phase} vs {hot, phase, of, war}
    assert [r.abstained for r in records] == [False, False, True, False, True, False, True, True]
    assert [r.best_correct for r in records] == [True, False, True, False, False, False, False, False]


def test_em_f1(records):
    assert m.exact_match_rate(records) == pytest.approx(2 / 8)
    assert m.f1_rate(records) == pytest.approx((1 + 2 / 3 + 1) / 8)
    assert m.exact_match_rate([]) is None


def test_abstention_precision_recall(records):
    precision, recall = m.abstention_precision_recall(records)
    assert precision == pytest.approx(1 / 4)  # r5 of r3, r5, r7, r8
    assert recall == pytest.approx(1 / 2)  # r5 of r5, r6
    assert m.abstention_precision_recall(records[:2]) == (None, None)


def test_answer_precision(records):
    assert m.answer_precision(records) == pytest.approx(1 / 4)  # r1 of r1, r2, r4, r6


# --- retrieval -------------------------------------------------------------------------------


def test_gold_in_text_normalises_on_word_boundaries():
    assert m.gold_in_text(["the hot phase of the war"], 'ending the "Hot phase of the WAR," provided')
    assert not m.gold_in_text(["war"], "warfare and warships")
    assert m.gold_in_text(["nope", "Kyiv’s control"], "areas under Kyiv’s control, arguing")
    assert not m.gold_in_text([], "anything")


def test_first_gold_rank():
    texts = ["Trump won.", "Sky News chief correspondent Stuart Ramsay asked.", "Stuart Ramsay again."]
    assert m.first_gold_rank(texts, ["Stuart Ramsay"]) == 2
    assert m.first_gold_rank(texts, ["Putin"]) is None
    assert m.first_gold_rank(texts, []) is None


def test_recall_at_k_and_mrr(records):
    # Answerable with retrieval: ranks 1, 2, 1, 7, None, None.
    assert m.recall_at_k(records, 1) == pytest.approx(2 / 6)
    assert m.recall_at_k(records, 3) == pytest.approx(3 / 6)
    assert m.recall_at_k(records, 5) == pytest.approx(3 / 6)
    assert m.recall_at_k(records, 10) == pytest.approx(4 / 6)
    assert m.mean_reciprocal_rank(records) == pytest.approx((1 + 1 / 2 + 1 + 1 / 7) / 6)


def test_retrieval_metrics_undefined_without_retrieval(records):
    reader_only = [rec(r.id, r.golds, r.prediction, r.best_span, r.score, r.latency, retrieval_evaluated=False)
                   for r in records]
    assert m.recall_at_k(reader_only, 5) is None
    assert m.mean_reciprocal_rank(reader_only) is None
    assert m.summarize(reader_only).recall_at_k == {}


# --- calibration -----------------------------------------------------------------------------


def test_expected_calibration_error(records):
    # One record per bin; |correct - score|: .1 + .7 + .7 + .6 + .2 + .8 + .4 + 0 = 3.5 over 8.
    assert m.expected_calibration_error(records) == pytest.approx(3.5 / 8)
    assert m.expected_calibration_error([]) is None


def test_reliability_bins_average_within_a_bin():
    two = [rec("a", ["x"], "x", "x", 0.61, 0.1), rec("b", ["x"], "y", "y", 0.69, 0.1)]
    bins = m.reliability_bins(two)
    assert len(bins) == 10 and bins[6].count == 2 and sum(b.count for b in bins) == 2
    assert bins[6].confidence == pytest.approx(0.65) and bins[6].accuracy == pytest.approx(0.5)
    assert m.expected_calibration_error(two) == pytest.approx(0.15)
    top = m.reliability_bins([rec("c", ["x"], "x", "x", 1.0, 0.1)])
    assert top[9].count == 1  # a score of exactly 1 belongs to the last bin
    assert m.expected_calibration_error([rec("c", ["x"], "x", "x", 1.0, 0.1)]) == pytest.approx(0.0)


# --- speed -----------------------------------------------------------------------------------


def test_latency_percentiles(records):
    p50, p95 = m.latency_percentiles(records)  # latencies 0.1 .. 0.8
    assert p50 == pytest.approx(0.45)  # halfway between 0.4 and 0.5
    assert p95 == pytest.approx(0.765)  # position 6.65: 0.7 + 0.65 * 0.1
    assert m.percentile([], 50) is None
    assert m.percentile([3.0], 95) == 3.0


def test_questions_per_second(records):
    assert m.questions_per_second(records) == pytest.approx(8 / 3.6)
    assert m.questions_per_second(records, wall_seconds=2.0) == pytest.approx(4.0)
    assert m.questions_per_second([]) is None


# --- thresholds ------------------------------------------------------------------------------


def test_threshold_sweep(records):
    sweep = m.threshold_sweep(records)
    assert [p.threshold for p in sweep[:-1]] == [0.0, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9]
    points = {p.threshold: p for p in sweep[:-1]}
    expected = {  # threshold: (answered, precision, EM, F1)
        0.0: (7, 2 / 7, 2 / 8, (8 / 3) / 8),
        0.2: (7, 2 / 7, 2 / 8, (8 / 3) / 8),
        0.3: (6, 2 / 6, 3 / 8, (11 / 3) / 8),
        0.4: (5, 1 / 5, 2 / 8, (8 / 3) / 8),
        0.6: (4, 1 / 4, 2 / 8, (8 / 3) / 8),
        0.7: (3, 1 / 3, 2 / 8, (8 / 3) / 8),
        0.8: (2, 1 / 2, 2 / 8, 2 / 8),
        0.9: (1, 1.0, 3 / 8, 3 / 8),
    }
    for t, (answered, precision, em, f1) in expected.items():
        p = points[t]
        assert (p.answered, p.coverage) == (answered, answered / 8), t
        assert (p.precision, p.em, p.f1) == pytest.approx((precision, em, f1)), t
    above = sweep[-1]  # just above the highest score: answer nothing
    assert above.threshold > 0.9 and above.answered == 0 and above.precision is None
    assert above.em == pytest.approx(2 / 8)


def test_sweep_at_the_threshold_in_use_reproduces_the_run(records):
    point = m.sweep_point(records, 0.5)
    assert point.em == pytest.approx(m.exact_match_rate(records))
    assert point.f1 == pytest.approx(m.f1_rate(records))
    assert point.coverage == pytest.approx(m.summarize(records).answered_share)
    assert [m.prediction_at(r, 0.5) for r in records] == [r.prediction for r in records]


def test_tune_threshold_for_f1(records):
    choice = m.tune_threshold(records)
    assert choice.threshold == pytest.approx(0.3)
    assert (choice.f1, choice.em, choice.precision, choice.coverage) == pytest.approx((11 / 24, 3 / 8, 1 / 3, 6 / 8))
    assert choice.reached and choice.objective == "f1"


def test_tune_threshold_f1_ties_go_to_the_higher_threshold():
    tied = [rec("a", ["x"], "x", "x", 0.8, 0.1), rec("b", ["y"], "z", "z", 0.4, 0.1)]
    # Thresholds 0, 0.4 and 0.8 all give F1 1/2; 0.8 answers only the right one.
    assert m.tune_threshold(tied).threshold == pytest.approx(0.8)


def test_tune_threshold_for_target_precision(records):
    half = m.tune_threshold(records, target_precision=0.5)
    assert half.threshold == pytest.approx(0.8) and half.reached
    assert (half.precision, half.coverage) == pytest.approx((0.5, 2 / 8))
    assert m.tune_threshold(records, target_precision=1.0).threshold == pytest.approx(0.9)
    assert m.tune_threshold(records, target_precision=0.25).threshold == pytest.approx(0.0)


def test_tune_threshold_unreachable_target(records):
    wrong = [r for r in records if r.id in ("r4", "r6")]  # every answer is wrong
    choice = m.tune_threshold(wrong, target_precision=0.5)
    assert not choice.reached and choice.precision == 0.0 and choice.threshold == 0.0
    with pytest.raises(ValueError):
        m.tune_threshold([])


def test_summary_and_kinds(records):
    s = m.summarize(records, ks=(1, 5))
    assert (s.n, s.answerable, s.unanswerable) == (8, 6, 2)
    assert s.has_answer_em == pytest.approx(1 / 6)
    assert s.has_answer_f1 == pytest.approx((1 + 2 / 3) / 6)
    assert s.answered_share == pytest.approx(4 / 8)
    assert s.recall_at_k == pytest.approx({1: 2 / 6, 5: 3 / 6})
    kinds = m.summarize_by_kind(records)
    assert list(kinds) == ["factual", "unanswerable-near", "unanswerable-far"]
    assert kinds["unanswerable-near"].abstention_recall == 1.0
    assert kinds["unanswerable-far"].abstention_recall == 0.0
    assert kinds["factual"].n == 6


# --- diagnosis -------------------------------------------------------------------------------


def test_every_category(records):
    got = {r.id: dg.categorize(r) for r in records}
    assert got == {
        "r1": None,
        "r2": dg.WRONG_SPAN,
        "r3": dg.SUPPRESSED_BY_THRESHOLD,
        "r4": dg.NOT_RETRIEVED,
        "r5": None,
        "r6": dg.FALSE_ANSWER,
        "r7": dg.CUT_BY_BOUNDARY,
        "r8": dg.NOT_IN_CORPUS,
    }
    diagnoses = dg.diagnose_all(records)
    assert [d.id for d in diagnoses] == ["r2", "r3", "r4", "r6", "r7", "r8"]
    assert dg.category_counts(diagnoses) == {c: 1 for c in dg.CATEGORIES}
    not_retrieved = next(d for d in diagnoses if d.id == "r4")
    assert not_retrieved.gold_rank == 7 and "ranked 7" in not_retrieved.detail
    assert "0.30 < threshold 0.50" in next(d for d in diagnoses if d.id == "r3").detail


def test_wrong_span_covers_abstention_with_a_wrong_best_span():
    r = rec("w", ["Sky News"], "", "Stuart Ramsay", 0.2, 0.1, 1, 1)
    assert dg.categorize(r) == dg.WRONG_SPAN


def test_reader_only_misses_skip_retrieval_categories():
    r = rec("ro", ["Sky News"], "Kyiv", "Kyiv", 0.9, 0.1, retrieval_evaluated=False)
    assert dg.categorize(r) == dg.WRONG_SPAN


def test_containment_index_finds_boundary_cuts():
    document = "In an interview with Sky News chief correspondent Stuart Ramsay, the president spoke."
    passages = ["In an interview with Sky News chief correspondent", "Stuart Ramsay, the president spoke."]
    index = dg.ContainmentIndex.from_texts(passages, [document])
    golds = ["correspondent Stuart Ramsay"]
    assert not index.in_passages(golds) and index.in_documents(golds)
    r = rec("b", golds, "Sky News", "Sky News", 0.7, 0.1, None, None)
    assert dg.needs_containment(r)
    dg.fill_containment(r, index)
    assert (r.gold_in_passages, r.gold_in_documents) == (False, True)
    assert dg.categorize(r) == dg.CUT_BY_BOUNDARY
    r2 = rec("n", ["Stuart Ramsay"], "Sky News", "Sky News", 0.7, 0.1, 9, None)
    dg.fill_containment(r2, index)
    assert dg.categorize(r2) == dg.NOT_RETRIEVED


# --- runner plumbing without models ----------------------------------------------------------


def test_best_candidate_reads_suppressed_span():
    from qa.evaluation.runner import best_candidate

    assert best_candidate(Answer("Kyiv", 0.8)) == ("Kyiv", 0.8)
    assert best_candidate(Answer("", 0.3, alternatives=[Answer("Putin", 0.3)])) == ("Putin", 0.3)
    assert best_candidate(Answer("", 0.1)) == ("", 0.1)


def test_document_texts_rebuilt_from_passages():
    from qa.evaluation.runner import document_texts

    text = "One two. Three four. Five six."
    passages = [Passage("a", "d.txt", 0, 20, text[0:20]), Passage("b", "d.txt", 9, 30, text[9:30])]

    @dataclass
    class Store:
        passages: list
        documents: dict = field(default_factory=dict)

    assert document_texts(Store(passages)) == {"d.txt": text}


ARTICLE = (
    "In an interview with Sky News chief correspondent Stuart Ramsay, the Ukrainian president spoke. "
    "Zelenskyy urged NATO to extend its protection. He wants to share ideas with him."
)


class FakeEngine:
    """Answers from a lookup table; passages are the article's three sentences."""

    default_threshold = 0.5

    def __init__(self) -> None:
        sentences = [s.strip() + "." for s in ARTICLE.split(".") if s.strip()]
        self.store = type("Store", (), {})()
        offset, self.store.passages = 0, []
        for i, s in enumerate(sentences):
            start = ARTICLE.index(s, offset)
            self.store.passages.append(Passage(f"p{i}", "seeds/a.txt", start, start + len(s), s))
            offset = start + len(s)
        self.store.documents = {}
        self.table = {"Who interviewed him?": ("Stuart Ramsay", 0.9, [0, 1]),
                      "What did NATO extend?": ("", 0.4, [1, 0]),  # right span, suppressed
                      "What does he share?": ("Sky News", 0.6, [0, 1]),  # passage 2 never retrieved
                      "What is the boiling point of water?": ("", 0.1, [2])}

    def _hits(self, order):
        return [Hit(self.store.passages[i], rank, 1.0 / rank) for rank, i in enumerate(order, 1)]

    def answer(self, question, top_k=None, threshold=None):
        text, score, order = self.table[question]
        suppressed = {"What did NATO extend?": "its protection", "What is the boiling point of water?": "ideas"}
        alternatives = [Answer(suppressed[question], score)] if not text else []
        return Answer(text, score, alternatives=alternatives, hits=self._hits(order),
                      timings={"retrieve": 0.01, "read": 0.02, "total": 0.03})

    def retrieve(self, question, k):
        return self._hits(self.table[question][2])[:k]


def _write_set(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


FAKE_SET = [
    {"question": "Who interviewed him?", "answers": ["Stuart Ramsay"], "kind": "factual"},
    {"question": "What did NATO extend?", "answers": ["its protection"], "kind": "factual"},
    {"question": "What does he share?", "answers": ["ideas"], "kind": "paraphrase"},
    {"question": "What is the boiling point of water?", "answers": [], "kind": "unanswerable-far"},
]


def test_run_eval_with_a_fake_engine_writes_every_file(tmp_path):
    from qa.evaluation.render import console_report
    from qa.evaluation.runner import run_eval

    path = _write_set(tmp_path / "set.jsonl", FAKE_SET)
    out = tmp_path / "report"
    report = run_eval(path, Settings.load(top_k=2), out_dir=out, progress=False, engine=FakeEngine(), tune=True)
    for name in ("report.json", "report.md", "reliability.png", "precision_coverage.png"):
        assert (out / name).stat().st_size > 0, name
    assert [r.id for r in report.records] == ["set-1", "set-2", "set-3", "set-4"]
    assert report.threshold == 0.5
    assert report.summary.em == pytest.approx(2 / 4)
    assert {d.id: d.category for d in report.diagnoses} == {
        "set-2": dg.SUPPRESSED_BY_THRESHOLD, "set-3": dg.NOT_RETRIEVED,
    }
    assert report.records[2].gold_in_passages is True and report.records[2].gold_rank is None
    assert report.records[1].best_span == "its protection" and report.records[1].score == 0.4
    assert report.summary.recall_at_k[1] == pytest.approx(2 / 3)
    assert report.tuned is not None and report.tuned.threshold == pytest.approx(0.4)
    saved = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert saved["summary"]["em"] == pytest.approx(0.5) and len(saved["records"]) == 4
    assert QuestionRecord.from_dict(saved["records"][1]).best_correct
    reloaded = load_report_records(out / "report.json")
    assert m.summarize(reloaded) == m.summarize(report.records)  # metrics can be recomputed offline
    assert "suppressed_by_threshold" in (out / "report.md").read_text(encoding="utf-8")
    console_report(report)  # renders without error


def test_cli_fail_under_f1_and_save_threshold(tmp_path, monkeypatch, capsys):
    from qa.evaluation import cli, runner

    real = runner.run_eval
    monkeypatch.setattr(runner, "run_eval", lambda *a, **k: real(*a, engine=FakeEngine(), **k))
    path = _write_set(tmp_path / "set.jsonl", FAKE_SET)
    saved = tmp_path / "threshold.json"
    common = [str(path), "--out", str(tmp_path / "r"), "--no-progress", "--threshold-file", str(saved)]
    assert cli.main(common + ["--fail-under-f1", "0.9"]) == 1
    assert cli.main(common + ["--fail-under-f1", "0.4", "--save-threshold"]) == 0
    from qa.evaluation.threshold_file import read_threshold

    assert read_threshold(saved) == pytest.approx(0.4)
    assert "QA_THRESHOLD=0.4000" in capsys.readouterr().out
    assert cli.main([str(tmp_path / "missing.jsonl")]) == 2


def test_load_items_jsonl_and_squad(tmp_path):
    items = load_items(_write_set(tmp_path / "s.jsonl", [{"question": "Q?", "answers": "A"}, {"question": "R?"}]))
    assert [(i.answers, i.kind) for i in items] == [(("A",), "squad"), ((), "unanswerable")]
    squad = {"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12},
                                                              {"text": "France", "answer_start": 12}]},
        {"id": "2", "question": "Who?", "answers": [], "is_impossible": True},
    ]}]}]}
    (tmp_path / "dev.json").write_text(json.dumps(squad), encoding="utf-8")
    items = load_items(tmp_path / "dev.json")
    assert [(i.id, i.answers, i.context) for i in items] == [
        ("1", ("France",), "Paris is in France."), ("2", (), "Paris is in France."),
    ]
    with pytest.raises(ValueError):
        load_items(tmp_path / "x.csv")


# --- the shipped question set ----------------------------------------------------------------


def _seed_article() -> Path:
    for candidate in (ROOT / "seeds" / SEED_ARTICLE, Path("/work/shared/seeds") / SEED_ARTICLE):
        if candidate.exists():
            return candidate
    pytest.skip("seed article not available")


def test_seed_questions_are_verbatim_and_balanced():
    article = _seed_article().read_text(encoding="utf-8")
    items = load_items(ROOT / "eval" / "seed_questions.jsonl")
    assert len(items) >= 45 and len({i.id for i in items}) == len(items)
    assert sum(not i.answerable for i in items) >= 12
    kinds = {i.kind for i in items}
    assert kinds == {"factual", "paraphrase", "boundary", "unanswerable-near", "unanswerable-far"}
    for item in items:
        assert item.answerable == (not item.kind.startswith("unanswerable")), item.question
        for gold in item.answers:
            assert gold in article, (item.question, gold)
            assert len(gold.split()) <= 12, gold


def test_heldout_seed_questions_are_verbatim_and_new():
    """The held-out set checks that the seed-set figures carry over to questions nobody tuned on:
    its golds are the article's own words and none of its questions repeats a seed-set one."""
    article = _seed_article().read_text(encoding="utf-8")
    items = load_items(ROOT / "eval" / "seed_heldout_questions.jsonl")
    seen = {i.question.casefold() for i in load_items(ROOT / "eval" / "seed_questions.jsonl")}
    assert len(items) == 45 and len({i.id for i in items}) == 45
    assert sum(not i.answerable for i in items) == 10
    for item in items:
        assert item.question.casefold() not in seen, item.question
        assert item.answerable == (not item.kind.startswith("unanswerable")), item.question
        for gold in item.answers:
            assert gold in article, (item.question, gold)


# --- end to end on the real engine -----------------------------------------------------------


#: Four seed questions with what the shipped (accurate) reader and retrieval give on the seed
#: article: (question, golds, kind, the answer given, rank of the first passage holding a gold).
#: The third is a known miss: the reader quotes the whole phrase ("protection to areas under
#: Kyiv’s control") where the gold is "its protection" (F1 1/4: one word of six against two).
END_TO_END = [
    ("Who interviewed Zelensky?", ["Stuart Ramsay", "Sky News chief correspondent Stuart Ramsay"], "factual",
     "Sky News chief correspondent Stuart Ramsay", 1),
    ("Who is the U.S. President-elect?", ["Donald Trump", "Trump"], "factual", "Donald Trump", 2),
    ("What did Zelenskyy urge NATO to extend immediately?", ["its protection"], "factual",
     "protection to areas under Kyiv’s control", 1),
    ("What is the boiling point of water?", [], "unanswerable-far", "", None),
]


@pytest.fixture(scope="module")
def seed_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the seed corpus (the evaluations below index it in folders of their own)."""
    from app_process import copy_writable, seeds_dir

    return copy_writable(seeds_dir(), tmp_path_factory.mktemp("eval") / "seeds")


@pytest.mark.slow
def test_run_eval_end_to_end_on_seed_corpus(tmp_path, seed_copy):
    from qa.evaluation.runner import run_eval

    path = _write_set(tmp_path / "four.jsonl", [
        {"question": q, "answers": golds, "kind": kind} for q, golds, kind, _, _ in END_TO_END
    ])
    settings = Settings.load(corpus_dir=str(seed_copy), index_dir=str(tmp_path / "index"))
    out = tmp_path / "report"
    report = run_eval(path, settings, out_dir=out, progress=False, tune=True)
    for name in ("report.json", "report.md", "reliability.png", "precision_coverage.png"):
        assert (out / name).stat().st_size > 0, name
    assert [(r.prediction, r.gold_rank) for r in report.records] == [(a, rank) for *_, a, rank in END_TO_END]
    s = report.summary
    assert (s.n, s.answerable, s.unanswerable) == (4, 3, 1)
    assert s.em == pytest.approx(3 / 4) and s.f1 == pytest.approx((1 + 1 + 1 / 4 + 1) / 4)
    assert s.recall_at_k[5] == 1.0 and s.recall_at_k[1] == pytest.approx(2 / 3)
    assert s.mrr == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert s.answered_share == pytest.approx(3 / 4)
    assert (s.abstention_precision, s.abstention_recall) == (1.0, 1.0)  # the out-of-scope question abstains
    assert 0.0 < report.threshold < 0.5  # the reader's calibrated one
    for r in report.records:
        assert r.retrieval_evaluated and r.abstained == (r.score < report.threshold or not r.best_span)
    assert {d.id: d.category for d in report.diagnoses} == {"four-3": dg.WRONG_SPAN}
    assert report.current is not None and report.current.em == pytest.approx(s.em)
    # F1 is best from the lowest right answer's score ("Donald Trump") up to the miss's, and ties go higher.
    assert report.tuned.f1 == pytest.approx(s.f1) and report.tuned.threshold == pytest.approx(report.records[1].score)
    assert s.latency_p50 <= s.latency_p95 and s.questions_per_second > 0
    assert not any(math.isnan(p.f1) for p in report.sweep)


@pytest.mark.slow
def test_a_saved_threshold_becomes_that_readers_default(tmp_path, seed_copy):
    """`qa eval --save-threshold` writes the tuned threshold beside the index; from then on the
    reader it was tuned with abstains below it by default, the other reader keeps its own, and
    an explicit threshold still wins."""
    from qa.evaluation import cli
    from qa.pipeline import Engine

    settings = Settings.load(corpus_dir=str(seed_copy), index_dir=str(tmp_path / "index"))
    question = "Who is the U.S. President-elect?"
    before = Engine(settings)
    shipped_fast = before.threshold_for("fast")
    trump = before.answer(question)
    assert trump.text == "Donald Trump" and trump.score >= before.default_threshold
    # Tuned on a set that counts this answer as wrong, the threshold must rise above its score.
    path = _write_set(tmp_path / "strict.jsonl", [
        {"question": "Who interviewed Zelensky?", "answers": ["Stuart Ramsay"], "kind": "factual"},
        {"question": question, "answers": [], "kind": "unanswerable-near"},
    ])
    status = cli.main([str(path), "--index-dir", settings.index_dir, "--corpus-dir", settings.corpus_dir,
                       "--out", str(tmp_path / "report"), "--no-progress", "--save-threshold"])
    assert status == 0
    saved = json.loads((tmp_path / "index" / "threshold.json").read_text(encoding="utf-8"))
    assert saved["reader"] == "accurate reader (shipped)" and saved["threshold"] > trump.score

    after = Engine(settings)  # what a new process on this index does
    assert after.default_threshold == pytest.approx(saved["threshold"])
    assert after.answer(question).abstained
    assert after.threshold_for("fast") == pytest.approx(shipped_fast)
    assert after.answer(question, threshold=0.2).text == "Donald Trump"


@pytest.mark.slow
def test_qa_eval_reader_only_hands_the_reader_the_gold_context(tmp_path, capsys):
    """`qa eval FILE.json --reader-only`: the reader reads each SQuAD question's own paragraph, with
    no index and no retrieval metrics."""
    from qa.evaluation import cli

    squad = {"data": [{"paragraphs": [
        {"context": "The guest Wi-Fi password is sunflower42. The router sits in the hallway cupboard.",
         "qas": [{"id": "wifi", "question": "What is the Wi-Fi password?",
                  "answers": [{"text": "sunflower42", "answer_start": 29}]}]},
        {"context": "Anna is bringing the cake on Saturday. Tom brings the candles.",
         "qas": [{"id": "cake", "question": "Who is bringing the cake?", "answers": [{"text": "Anna", "answer_start": 0}]},
                 {"id": "moon", "question": "How far away is the Moon?", "answers": [], "is_impossible": True}]},
    ]}]}
    (tmp_path / "dev.json").write_text(json.dumps(squad), encoding="utf-8")
    out = tmp_path / "report"
    status = cli.main([str(tmp_path / "dev.json"), "--reader-only", "--out", str(out), "--no-progress",
                       "--index-dir", str(tmp_path / "no-index")])
    assert status == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["mode"] == "reader_only"
    assert [(r["id"], r["prediction"]) for r in report["records"]] == [
        ("wifi", "sunflower42"), ("cake", "Anna"), ("moon", "")]
    assert report["summary"]["em"] == 1.0 and report["summary"]["recall_at_k"] == {}
    assert not any(r["retrieval_evaluated"] for r in report["records"])
    assert not (tmp_path / "no-index").exists(), "reading the gold context needs no index"
