"""Distilling the fast reader: teacher targets land on the student's tokens, and the loss mixes them."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from qa.training.targets import TeacherTargets, load_targets
from qa.training.teacher import project, top_k
from qa.training.train import span_loss, teacher_batch

CONTEXT = ("The Quillport lighthouse was built by Mara Velasquez in 1871 on the northern cliff. "
           "Its lamp burned whale oil until 1902, when the harbour board paid for a kerosene burner.")


def test_teacher_tokens_merge_onto_the_student_token_that_holds_their_characters() -> None:
    student = [(-1, -1), (0, 5), (6, 14), (-1, -1)]  # [CLS] "Quillport lighthouse" split in two, [SEP]
    teacher = [(-1, -1), (0, 3), (3, 5), (6, 14), (-1, -1)]  # the teacher splits the first word further
    logits = np.array([1.0, 2.0, 2.0, 0.5, -5000.0])
    starts = project(logits, teacher, student, end=False)
    ends = project(logits, teacher, student, end=True)
    assert starts[0] == 1.0  # no answer stays no answer
    assert starts[1] == pytest.approx(2.0 + np.log(2))  # both teacher starts inside "Quill|port": probabilities add
    assert starts[2] == pytest.approx(0.5) and np.isneginf(starts[3])
    assert ends[1] == pytest.approx(np.logaddexp(2.0, 2.0)) and ends[2] == pytest.approx(0.5)
    positions, values = top_k(starts, 3)
    assert positions.tolist() == [1, 0, 2] and values[0] == pytest.approx(2.0 + np.log(2), abs=1e-2)


@pytest.mark.slow
def test_the_accurate_reader_marks_the_answer_on_minilm_windows(tmp_path) -> None:
    """The real teacher (the shipped accurate reader) over real MiniLM windows puts its best start and
    end on the gold answer's tokens; a second run finds the shard done and reads nothing."""
    from qa.training import teacher
    from qa.training.data import TrainWindow  # noqa: F401 - the windows file holds these

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "dev").mkdir()
    questions = [("Who built the Quillport lighthouse?", "Mara Velasquez"),
                 ("What did the lamp burn until 1902?", "whale oil"),
                 ("Who paid for a kerosene burner?", "the harbour board")]
    payload = {"version": "v2.0", "data": [{"title": "Quillport", "paragraphs": [{"context": CONTEXT, "qas": [
        {"id": str(i), "question": q, "is_impossible": False, "answers": [{"text": a, "answer_start": CONTEXT.index(a)}]}
        for i, (q, a) in enumerate(questions)]}]}]}
    for path in (data / "train" / "quill.json.gz", data / "dev" / "nq_qed_dev.json.gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            json.dump(payload, handle)
    out = tmp_path / "teacher"
    teacher.main(["--data", str(data), "--out", str(out), "--shard-size", "8"])
    cached = torch.load(out / "windows.pt", weights_only=False)
    windows = cached["windows"]
    targets = load_targets(out, len(windows), 16)
    answered = [k for k, w in enumerate(windows) if w.start_position > 0]
    assert len(answered) == 3 and (targets.start_positions[:, 0] >= 0).all()
    for k in answered:
        assert targets.start_positions[k, 0] == windows[k].start_position
        assert targets.end_positions[k, 0] == windows[k].end_position
    shard = out / "shard-00000.npz"
    before = shard.stat().st_mtime_ns
    teacher.main(["--data", str(data), "--out", str(out), "--shard-size", "8"])
    assert shard.stat().st_mtime_ns == before


def _targets(start: int, end: int, width: int) -> TeacherTargets:
    """A teacher sure of one span: that position far above the rest."""
    positions = np.array([[start, 0, 1]], dtype=np.int16)
    end_positions = np.array([[end, 0, 1]], dtype=np.int16)
    logits = np.array([[20.0, 0.0, 0.0]], dtype=np.float16)
    return TeacherTargets(positions, logits, end_positions, logits.copy())


def test_loss_is_the_gold_cross_entropy_without_a_teacher_and_follows_the_teacher_with_weight_one() -> None:
    width = 6
    start_logits = torch.zeros(1, width, requires_grad=True)
    end_logits = torch.zeros(1, width, requires_grad=True)
    gold = {"start_positions": torch.tensor([2]), "end_positions": torch.tensor([3])}
    hard = span_loss(start_logits, end_logits, gold)
    assert hard.item() == pytest.approx(np.log(width))  # uniform logits: log(width) per end
    teacher = teacher_batch(_targets(4, 5, width), [0])
    assert span_loss(start_logits, end_logits, gold, teacher, soft_weight=0.0).item() == pytest.approx(hard.item())
    soft = span_loss(start_logits, end_logits, gold, teacher, soft_weight=1.0, temperature=1.0)
    soft.backward()
    # Weight one: the gradient pulls toward the teacher's span (4, 5), not the gold one (2, 3).
    assert start_logits.grad[0].argmin().item() == 4 and end_logits.grad[0].argmin().item() == 5
    assert start_logits.grad[0, 2].item() > 0


def test_windows_the_teacher_has_not_read_learn_from_the_gold_span_only() -> None:
    width = 6
    logits = torch.randn(2, width), torch.randn(2, width)
    gold = {"start_positions": torch.tensor([2, 1]), "end_positions": torch.tensor([3, 1])}
    untaught = _targets(4, 5, width)
    both = TeacherTargets(*(np.concatenate([getattr(untaught, f), np.full_like(getattr(untaught, f), -1 if "pos" in f else 0)])
                            for f in ("start_positions", "start_logits", "end_positions", "end_logits")))
    mixed = span_loss(*logits, gold, teacher_batch(both, [0, 1]), soft_weight=1.0)
    first = span_loss(logits[0][:1], logits[1][:1], {k: v[:1] for k, v in gold.items()},
                      teacher_batch(both, [0]), soft_weight=1.0)
    second_hard = span_loss(logits[0][1:], logits[1][1:], {k: v[1:] for k, v in gold.items()})
    assert mixed.item() == pytest.approx((first.item() + second_hard.item()) / 2, rel=1e-5)
