"""Reader training mechanics on a handful of examples (CI never trains a real model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qa.training.calibrate import fit_platt
from qa.training.data import QAExample, tokenize_for_training
from qa.training.train import base_model_path, collate

pytestmark = pytest.mark.slow  # loads the MiniLM base

EXAMPLES = [
    QAExample("1", "Who built the lighthouse?", "The lighthouse was built by Mara Velasquez in 1871.",
              (("Mara Velasquez", 29),), "test"),
    QAExample("2", "When was the lighthouse built?", "The lighthouse was built by Mara Velasquez in 1871.",
              (("1871", 47),), "test"),
    QAExample("3", "What does Quillport export?", "Quillport exports copper and saffron to its neighbours.",
              (("copper and saffron", 18),), "test"),
    QAExample("4", "Who is the mayor of Quillport?", "Glass frogs have translucent skin.", (), "test"),
]


def test_windows_label_the_gold_span() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    windows = tokenize_for_training(EXAMPLES, tokenizer, max_length=96, stride=16)
    assert len(windows) == 4
    first = windows[0]
    span = tokenizer.decode(first.input_ids[first.start_position : first.end_position + 1])
    assert span == "mara velasquez"
    assert (windows[3].start_position, windows[3].end_position) == (0, 0)


def test_a_few_steps_make_the_loss_fall() -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    model = AutoModelForQuestionAnswering.from_pretrained(base_model_path())
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    windows = tokenize_for_training(EXAMPLES, tokenizer, max_length=96, stride=16)
    batch = collate(windows, list(range(len(windows))))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    losses = []
    for _ in range(12):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("spread", [1.0, 8.0, 40.0])
def test_platt_fit_recovers_the_curve_whatever_the_margin_scale(spread: float) -> None:
    """Wide margins (a better-trained reader) once sent a plain Newton fit to slope -3.5e8."""
    rng = np.random.default_rng(0)
    margins = rng.normal(2.0, spread, 20_000)
    labels = (rng.random(margins.size) < 1 / (1 + np.exp(-(0.5 / spread * margins - 1.0)))).astype(float)
    slope, intercept = fit_platt(np.append(margins, -1e3), np.append(labels, 0.0))  # one "no span" example
    assert slope == pytest.approx(0.5 / spread, rel=0.1)
    assert intercept == pytest.approx(-1.0, abs=0.1)


def test_calibration_corpus_holds_half_the_articles_and_questions_about_the_rest_have_no_answer(tmp_path) -> None:
    from qa.training.calibrate import write_corpus

    holdout = []
    for n in range(40):
        context = f"Article {n} says that the river Quill{n} is {100 + n} kilometres long."
        holdout.append(QAExample(f"q{n}", f"How long is the river Quill{n}?", context,
                                 ((f"{100 + n} kilometres", context.index(f"{100 + n}")),), "squadshifts_wiki",
                                 f"Quill{n}"))
    holdout.append(QAExample("q0-neg", "How long is the river Quill0?", "Unrelated.", (), "squadshifts_wiki", "X"))
    questions, documents = write_corpus(holdout, tmp_path)
    files = sorted(tmp_path.rglob("*.txt"))
    assert len(files) == documents and 10 < documents < 30  # about half of 40 articles
    corpus = " ".join(f.read_text() for f in files)
    in_scope = [q for q in questions if q.answers]
    out_of_scope = [q for q in questions if not q.answers]
    assert len(in_scope) == documents and len(in_scope) + len(out_of_scope) == 40
    assert all(q.answers[0][0] in corpus for q in in_scope)
    for q in out_of_scope:
        n = int(q.id.removeprefix("q").removesuffix("-out"))
        assert f"{100 + n} kilometres" not in corpus and q.context == ""


def _tiny_reader(folder, seed: int, hidden: int = 32):
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=64, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=32)
    model = BertForQuestionAnswering(config)
    model.save_pretrained(folder)
    return model


def test_averaged_reader_holds_the_weighted_mean_of_every_tensor_and_loads(tmp_path) -> None:
    from transformers import AutoModelForQuestionAnswering

    from qa.training.average import average_readers

    a = _tiny_reader(tmp_path / "a", seed=1).state_dict()
    b = _tiny_reader(tmp_path / "b", seed=2).state_dict()
    out = average_readers([tmp_path / "a", tmp_path / "b"], tmp_path / "soup", weights=[0.25, 0.75])
    soup = AutoModelForQuestionAnswering.from_pretrained(out).state_dict()
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(a[name], b[name])
    for key in a:
        if "position_ids" not in key:
            torch.testing.assert_close(soup[key], 0.25 * a[key] + 0.75 * b[key])
    with torch.inference_mode():
        logits = AutoModelForQuestionAnswering.from_pretrained(out)(input_ids=torch.tensor([[1, 5, 9, 2]])).start_logits
    assert logits.shape == (1, 4)


def test_a_run_averages_with_the_exported_fast_reader_it_started_from(tmp_path) -> None:
    """`qa/models/fast` (a full delta) averages as its merged weights, so a run needs no copy of
    the training folder its starting reader came from; the soup loads with its own tokenizer."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa.config import SHIPPED_READERS
    from qa.reader import load_shipped_reader
    from qa.training.average import average_readers

    merged, _ = load_shipped_reader(SHIPPED_READERS["fast"])
    expected = {name: tensor.clone() for name, tensor in merged.state_dict().items()}
    merged.load_state_dict({name: tensor + 1.0 for name, tensor in expected.items()})
    merged.save_pretrained(tmp_path / "shifted")
    out = average_readers([SHIPPED_READERS["fast"], tmp_path / "shifted"], tmp_path / "soup")
    soup = AutoModelForQuestionAnswering.from_pretrained(out).state_dict()
    name = "bert.encoder.layer.0.attention.self.query.weight"
    torch.testing.assert_close(soup[name], expected[name] + 0.5)
    torch.testing.assert_close(soup["qa_outputs.bias"], expected["qa_outputs.bias"] + 0.5)
    assert AutoTokenizer.from_pretrained(out)("Who leads Ukraine?")["input_ids"][:2] == [101, 2040]


def test_averaging_refuses_readers_that_do_not_match(tmp_path) -> None:
    from qa.training.average import average_readers

    _tiny_reader(tmp_path / "small", seed=1, hidden=32)
    _tiny_reader(tmp_path / "large", seed=1, hidden=64)
    with pytest.raises(ValueError, match="has shape"):
        average_readers([tmp_path / "small", tmp_path / "large"], tmp_path / "out")
    with pytest.raises(ValueError, match="at least two"):
        average_readers([tmp_path / "small"], tmp_path / "out")
    with pytest.raises(ValueError, match="sum to 1"):
        average_readers([tmp_path / "small", tmp_path / "small"], tmp_path / "out", weights=[0.5, 0.6])
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        average_readers([tmp_path / "small", tmp_path / "missing"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def _lora_delta(seed: int, rank: int, layers=("enc.0.q", "enc.0.ffn"), shapes=((12, 10), (16, 12))) -> dict:
    generator = torch.Generator().manual_seed(seed)
    delta = {"enc.0.norm.weight": torch.randn(12, generator=generator),
             "qa_outputs.weight": torch.randn(2, 12, generator=generator)}
    for layer, (out_features, in_features) in zip(layers, shapes):
        delta[f"{layer}.lora_A"] = torch.randn(rank, in_features, generator=generator)
        delta[f"{layer}.lora_B"] = torch.randn(out_features, rank, generator=generator)
    return delta


def _update(delta: dict, layer: str, scaling: float) -> torch.Tensor:
    return scaling * delta[f"{layer}.lora_B"].double() @ delta[f"{layer}.lora_A"].double()


def test_lora_average_is_exact_when_the_rank_allows_and_the_best_cut_when_not() -> None:
    from qa.training.average import average_lora_deltas

    a, b = _lora_delta(1, rank=2), _lora_delta(2, rank=2)
    # Different scalings are folded in: the result carries the first one's.
    exact, error = average_lora_deltas([a, b], [2.0, 4.0], weights=[0.25, 0.75], rank=4)
    assert error < 1e-6
    for layer in ("enc.0.q", "enc.0.ffn"):
        expected = 0.25 * _update(a, layer, 2.0) + 0.75 * _update(b, layer, 4.0)
        torch.testing.assert_close(_update(exact, layer, 2.0), expected, rtol=1e-5, atol=1e-5)
        assert exact[f"{layer}.lora_A"].shape[0] == 4
    head = "qa_outputs.weight"
    torch.testing.assert_close(exact[head], 0.25 * a[head] + 0.75 * b[head])

    cut, error = average_lora_deltas([a, b], [2.0, 2.0])  # back to the readers' rank, 2
    errors = []
    for layer in ("enc.0.q", "enc.0.ffn"):
        mean = 0.5 * _update(a, layer, 2.0) + 0.5 * _update(b, layer, 2.0)
        singular = torch.linalg.svdvals(mean)
        best_error = singular[2:].square().sum().sqrt()  # Eckart-Young: no rank-2 matrix is closer
        assert cut[f"{layer}.lora_A"].shape == (2, a[f"{layer}.lora_A"].shape[1])
        assert torch.linalg.matrix_norm(_update(cut, layer, 2.0) - mean) == pytest.approx(float(best_error), rel=1e-4)
        errors.append(float(best_error / singular.square().sum().sqrt()))
    assert 0.05 < error == pytest.approx(max(errors), rel=1e-4)


def _write_lora_reader(folder: Path, delta: dict, base: str = "mpnet", fmt: str = "qa-reader-lora-v1") -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({k: v.half() for k, v in delta.items()}, str(folder / "delta.safetensors"),
              metadata={"format": fmt, "base": base, "lora_scaling": "2.0"})
    (folder / "config.json").write_text('{"model_type": "mpnet"}')


def test_averaged_lora_reader_ships_at_the_same_rank_with_checksums_that_match(tmp_path) -> None:
    import hashlib

    from qa.reader import delta_metadata
    from qa.training.average import average_lora_readers
    from safetensors.torch import load_file

    a, b = _lora_delta(1, rank=2), _lora_delta(2, rank=2)
    _write_lora_reader(tmp_path / "a", a)
    _write_lora_reader(tmp_path / "b", b)
    out = average_lora_readers([tmp_path / "a", tmp_path / "b"], tmp_path / "soup")
    assert delta_metadata(out) == {"format": "qa-reader-lora-v1", "base": "mpnet", "lora_scaling": "2.0"}
    soup = load_file(str(out / "delta.safetensors"))
    assert soup.keys() == a.keys() and soup["enc.0.q.lora_A"].shape == (2, 10)
    assert soup["enc.0.q.lora_A"].dtype == torch.float16
    stored = [d["enc.0.norm.weight"].half().float() for d in (a, b)]  # the readers ship fp16
    torch.testing.assert_close(soup["enc.0.norm.weight"].float(), (0.5 * stored[0] + 0.5 * stored[1]).half().float())
    checksums = json.loads((out / "checksums.json").read_text())
    assert checksums == {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
                         for name in ("delta.safetensors", "config.json")}


def test_lora_averaging_refuses_readers_of_another_recipe(tmp_path) -> None:
    from qa.training.average import average_lora_readers

    _write_lora_reader(tmp_path / "a", _lora_delta(1, rank=2))
    _write_lora_reader(tmp_path / "minilm", _lora_delta(2, rank=2), base="minilm")
    _write_lora_reader(tmp_path / "full", _lora_delta(3, rank=2), fmt="qa-reader-delta-v1")
    other_layers = _lora_delta(4, rank=2, layers=("enc.0.q", "enc.0.k"), shapes=((12, 10), (12, 10)))
    _write_lora_reader(tmp_path / "other", other_layers)
    with pytest.raises(ValueError, match="not a LoRA reader on base 'mpnet'"):
        average_lora_readers([tmp_path / "a", tmp_path / "minilm"], tmp_path / "out")
    with pytest.raises(ValueError, match="format 'qa-reader-delta-v1'"):
        average_lora_readers([tmp_path / "a", tmp_path / "full"], tmp_path / "out")
    with pytest.raises(ValueError, match="adapts other layers"):
        average_lora_readers([tmp_path / "a", tmp_path / "other"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no delta.safetensors"):
        average_lora_readers([tmp_path / "a", tmp_path / "missing"], tmp_path / "out")
    with pytest.raises(ValueError, match="at least two"):
        average_lora_readers([tmp_path / "a"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_mpnet_windows_have_no_token_types_and_label_the_gold_span() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_path("mpnet"))
    windows = tokenize_for_training(EXAMPLES, tokenizer, max_length=96, stride=16)
    first = windows[0]
    assert first.token_type_ids == []
    assert tokenizer.decode(first.input_ids[first.start_position : first.end_position + 1]) == "mara velasquez"
    batch = collate(windows, [0, 3], pad_id=tokenizer.pad_token_id)
    assert "token_type_ids" not in batch
    assert batch["input_ids"][1, -1].item() == tokenizer.pad_token_id == 1  # MPNet pads with 1, not 0


def test_lora_training_on_mpnet_exports_a_small_delta_that_loads_as_the_trained_model(tmp_path) -> None:
    """A few LoRA steps on MPNet, exported as a shipped reader and merged back: same logits."""
    from transformers import AutoTokenizer

    from qa.reader import delta_metadata, load_shipped_reader
    from qa.training.export import export_reader
    from qa.training.train import build_model, trainable_count

    torch.manual_seed(0)
    base = base_model_path("mpnet")
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = build_model(base, "base", 0.0, lora_rank=4)
    trainable, total = trainable_count(model)
    assert total > 100e6 and trainable < 1e6  # adapters, LayerNorms and the span head only
    windows = tokenize_for_training(EXAMPLES, tokenizer, max_length=96, stride=16)
    batch = collate(windows, list(range(len(windows))), tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses

    sizes = export_reader(model, tmp_path / "reader", base="mpnet")
    assert sizes["delta.safetensors"] < 1.5 * 2**20  # rank 4: about 1 MiB in fp16
    assert delta_metadata(tmp_path / "reader") == {"format": "qa-reader-lora-v1", "base": "mpnet",
                                                   "lora_scaling": "2.0"}
    merged, merged_tokenizer = load_shipped_reader(tmp_path / "reader", cache_dir=tmp_path / "cache")
    model.eval()
    merged.eval()
    inputs = merged_tokenizer(["Who built the lighthouse?"], [EXAMPLES[0].context], return_tensors="pt")
    with torch.no_grad():
        expected, got = model(**inputs), merged(**inputs)
    assert torch.allclose(expected.start_logits, got.start_logits, atol=2e-2)
    assert torch.allclose(expected.end_logits, got.end_logits, atol=2e-2)
    assert not torch.allclose(expected.start_logits, got.start_logits * 0 + got.start_logits.mean(), atol=1e-3)

    # A later session whose checkpoints are gone goes on from the exported adapters themselves:
    # the rebuilt LoRA model predicts as the trained one, with the same adapters still training.
    resumed = build_model(base, str(tmp_path / "reader"), 0.0, lora_rank=4)
    resumed.eval()
    with torch.no_grad():
        again = resumed(**inputs)
    assert torch.allclose(expected.start_logits, again.start_logits, atol=2e-2)
    assert trainable_count(resumed) == (trainable, total)
    with pytest.raises(SystemExit, match="--lora-alpha"):
        build_model(base, str(tmp_path / "reader"), 0.0, lora_rank=4, lora_alpha=4)


def test_learning_curve_of_a_continued_run_goes_on_from_the_earlier_run(tmp_path) -> None:
    from qa.training.card import curve_points, curve_rows

    def run(name: str, *points: tuple[int, float]) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        lines = [json.dumps({"step": step, "windows": step * 16, "dev": {"em": f1 - 15, "f1": f1, "n": 200},
                             "holdout": {"f1": f1 + 1, "null_acc": 80.0}}) for step, f1 in points]
        (folder / "curve.jsonl").write_text("\n".join(lines) + "\n")
        return folder

    first, second = run("first", (125, 51.6), (250, 59.7)), run("second", (130, 63.0), (260, 66.5))
    rows = curve_rows(curve_points([first, second])).splitlines()
    assert rows == ["| 125 | 2,000 | 36.6 | 51.6 | 52.6 | 80.0 |", "| 250 | 4,000 | 44.7 | 59.7 | 60.7 | 80.0 |",
                    "| 380 | 6,080 | 48.0 | 63.0 | 64.0 | 80.0 |", "| 510 | 8,160 | 51.5 | 66.5 | 67.5 | 80.0 |"]


def test_steps_within_budget_fill_the_time_left_at_the_measured_speed() -> None:
    from qa.training.train import steps_within_budget

    # 50 steps done in 60 s of a 5-minute budget at 10 steps/s: 2,400 more fit.
    assert steps_within_budget(50, 60.0, 300.0, 10.0, planned=10_000) == 2_450
    assert steps_within_budget(50, 60.0, 300.0, 10.0, planned=1_000) == 1_000  # never past the plan
    assert steps_within_budget(50, 400.0, 300.0, 10.0, planned=1_000) == 51  # spent: one more, to checkpoint


def _squad_file(path: Path, towns: range) -> None:
    import gzip

    articles = [{"title": f"Town {i}", "paragraphs": [{
        "context": f"Town {i} was founded in {1800 + i} by a miller named Ada Brook {i}.",
        "qas": [{"id": f"q{i}", "question": f"When was Town {i} founded?", "is_impossible": False,
                 "answers": [{"text": str(1800 + i), "answer_start": len(f"Town {i} was founded in ")}]}]}]}
        for i in towns]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump({"version": "v2.0", "data": articles}, handle)


def test_a_time_budget_ends_the_run_early_with_its_learning_rate_decayed_and_resume_keeps_that_length(
        tmp_path) -> None:
    """A budget spent by the time the run has timed its steps leaves one more step: the run ends
    there (not at the 4 planned passes), checkpointed, scored and saved, with the learning rate
    at zero; --resume does not stretch it back to the plan."""
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from qa.training.train import BUDGET_TIMED_STEPS, BUDGET_WARMUP_STEPS, main

    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    tiny = tmp_path / "tiny"
    torch.manual_seed(0)
    BertForQuestionAnswering(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=64)).save_pretrained(tiny)
    tokenizer.save_pretrained(tiny)
    _squad_file(tmp_path / "data" / "train" / "towns.json.gz", range(40))
    _squad_file(tmp_path / "data" / "dev" / "nq_qed_dev.json.gz", range(100, 105))
    run = tmp_path / "run"
    args = ["--data", str(tmp_path / "data"), "--out", str(run), "--base", str(tiny), "--batch-size", "2",
            "--epochs", "4", "--time-budget", "0.0001", "--eval-every", "1000", "--dev-limit", "5",
            "--log-every", "5", "--no-bf16", "--threads", "1"]
    main(args)

    state = torch.load(run / "checkpoint.pt", weights_only=False)
    expected = BUDGET_WARMUP_STEPS + BUDGET_TIMED_STEPS + 1
    assert (state["step"], state["total_steps"], state["budgeted"]) == (expected, expected, True)
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.0
    assert [json.loads(line)["step"] for line in (run / "curve.jsonl").read_text().splitlines()] == [expected]
    assert (run / "final" / "config.json").exists()

    main(args + ["--resume"])
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == expected
