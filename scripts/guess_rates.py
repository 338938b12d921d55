"""How often the chat's visible best guess (qa.guesses.shown_guess) is right, per question set.

Builds a throwaway index of seeds/ and asks every question of each set with `Engine.answer()`
(default settings, the accurate reader unless QA_READER says otherwise). For each set it prints
the abstentions, the guesses shown, how many of those exactly match a gold answer, and how many
out-of-scope questions (no gold answer) showed one; `-v` lists every abstention's best span.

    python scripts/guess_rates.py eval/seed_heldout_questions.jsonl eval/seed_questions.jsonl
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", type=Path,
                        default=[ROOT / "eval" / "seed_heldout_questions.jsonl", ROOT / "eval" / "seed_questions.jsonl"])
    parser.add_argument("-v", "--verbose", action="store_true", help="list every abstention's best span")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from qa.config import Settings
    from qa.evaluation.records import load_items
    from qa.guesses import shown_guess
    from qa.metrics import best_over_golds, exact_match
    from qa.pipeline import Engine

    with tempfile.TemporaryDirectory() as index_dir:
        settings = Settings.load(corpus_dir=str(ROOT / "seeds"), index_dir=index_dir)
        engine = Engine(settings)
        engine.ensure_index()
        print(f"reader {settings.reader}, threshold {engine.default_threshold:.3f}")
        for path in args.sets:
            abstained = shown = right = out_of_scope = out_of_scope_shown = 0
            for item in load_items(path):
                answer = engine.answer(item.question)
                out_of_scope += not item.answerable
                if not answer.abstained:
                    continue
                abstained += 1
                guess = shown_guess(answer)
                best = answer.alternatives[0] if answer.alternatives else None
                correct = guess is not None and best_over_golds(exact_match, guess.text, list(item.answers)) == 1.0
                shown += guess is not None
                right += correct
                out_of_scope_shown += guess is not None and not item.answerable
                if args.verbose and best is not None:
                    mark = ("RIGHT" if correct else "wrong") if guess else "hidden"
                    others = ", ".join(f"{a.text!r} {a.score:.3f}" for a in answer.alternatives[1:])
                    print(f"  {mark:6} {best.score:.3f} {best.text!r} <- {item.question!r} "
                          f"(gold {list(item.answers)}; others {others})")
            print(f"{path.name}: {abstained} abstentions, guesses shown {shown}, right {right}; "
                  f"out-of-scope questions {out_of_scope}, guesses shown on them {out_of_scope_shown}")
        for question in ("Who is the president of Ukraine?", "Who leads Ukraine?", "What is the boiling point of water?"):
            answer = engine.answer(question)
            guess = shown_guess(answer)
            said = answer.text or (f"guess {guess.text!r} ({guess.score:.3f})" if guess else "no guess")
            print(f"{question!r}: {said}")


if __name__ == "__main__":
    main()
