"""The training mix: weighted passes and retriever-style hard negatives (no model needed)."""

from __future__ import annotations

import random

from qa.training.data import QAExample, add_hard_negatives, pass_selection


def _examples(source: str, n: int) -> list[QAExample]:
    return [QAExample(f"{source}-{i}", f"q{i}?", f"context {i}", (("context", 0),), source) for i in range(n)]


def test_each_pass_draws_a_fresh_weighted_share_of_narrow_domains() -> None:
    examples = _examples("policyqa", 1000) + _examples("nq_qed_train", 300)
    first, second = pass_selection(examples, 0, 13), pass_selection(examples, 1, 13)
    policy = set(range(1000))
    assert len(set(first) & policy) == 200 and len(set(second) & policy) == 200  # weight 0.2
    assert set(range(1000, 1300)) <= set(first) and set(range(1000, 1300)) <= set(second)  # whole
    assert max(first.values()) == 1
    assert first != second and pass_selection(examples, 0, 13) == first  # fresh per pass, repeatable


def test_a_weight_above_one_repeats_a_file_within_a_pass() -> None:
    examples = _examples("nq_qed_train", 100) + _examples("squadshifts_wiki", 100)
    counts = pass_selection(examples, 0, 13, {"nq_qed_train": 2.5})
    nq = [counts[i] for i in range(100)]
    assert nq.count(3) == 50 and nq.count(2) == 50  # every question twice, half of them thrice
    assert all(counts[i] == 1 for i in range(100, 200))  # unlisted files count once


def test_hard_negative_is_the_closest_paragraph_without_the_answer() -> None:
    contexts = [
        "The Quillport lighthouse was built by Mara Velasquez in 1871 on the northern cliff.",
        "The Quillport lighthouse keeper lived on the northern cliff with his dog.",  # close, no answer
        "Saffron and copper are the main exports of the valley towns.",
        "Glass frogs have translucent skin and live in cloud forests.",
    ]
    question = QAExample("1", "Who built the Quillport lighthouse on the northern cliff?", contexts[0],
                         (("Mara Velasquez", contexts[0].index("Mara")),), "wiki", "Quillport")
    others = [QAExample(str(i), "x?", c, (("x", 0),), "wiki") for i, c in enumerate(contexts[1:], 2)]
    negatives = add_hard_negatives([question, *others], rate=1.0, rng=random.Random(0))
    mine = [n for n in negatives if n.id == "1-neg"]
    assert len(mine) == 1
    assert mine[0].context == contexts[1] and mine[0].answers == () and mine[0].question == question.question


def test_a_continuing_run_draws_the_passes_after_the_ones_it_continues() -> None:
    from qa.training.data import TrainWindow
    from qa.training.train import pass_schedule

    examples = _examples("squad_v1_train", 400)
    windows = [TrainWindow([101, 7, 102], [], 0, 0, example=i) for i in range(400)]
    weights = {"squad_v1_train": 0.25}
    two_passes = pass_schedule(windows, examples, 2, 10, 13, weights)
    first = {k for batch in pass_schedule(windows, examples, 1, 10, 13, weights) for k in batch}
    continued = pass_schedule(windows, examples, 1, 10, 13, weights, first_pass=1)
    assert continued == two_passes[10:]  # the second pass of a two-pass run, batch for batch
    drawn = {k for batch in continued for k in batch}
    assert len(drawn) == 100 and len(drawn - first) > 60  # a fresh quarter, mostly unseen
