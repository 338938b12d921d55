"""The benchmark corpora: one .txt per distinct context of shared/data/qa/train/*.json.gz, topped up
with "mixed" documents of real sentences for sizes beyond the real data, and questions whose
context is in every size.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from harness import DATA_DIR, log, text_key


def load_contexts_and_questions() -> tuple[list[str], dict[str, list[tuple[str, list[str]]]]]:
    """Distinct contexts (stable shuffled order) and the answerable questions of each."""
    from qa.training.data import load_squad

    questions: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted((DATA_DIR / "train").glob("*.json.gz")):
        for ex in load_squad(path):
            questions.setdefault(ex.context, [])
            if ex.answers:
                questions[ex.context].append((ex.question, [a for a, _ in ex.answers]))
    contexts = sorted(questions, key=text_key)
    return contexts, questions


def mixed_documents(contexts: list[str], count: int, seed: int = 7) -> list[str]:
    """Documents of ~140 words made of real sentences drawn at random from the contexts."""
    from qa.sentences import split_sentences

    rng = random.Random(seed)
    sentences = [c[s:e] for c in contexts for s, e in split_sentences(c) if 5 <= len(c[s:e].split()) <= 60]
    docs = []
    for _ in range(count):
        words, parts = 0, []
        while words < 140:
            s = sentences[rng.randrange(len(sentences))]
            parts.append(s)
            words += len(s.split())
        docs.append(" ".join(parts))
    return docs


def passages_in(text: str) -> int:
    from qa.passages import split_passages
    from qa.types import Document

    return len(split_passages(Document("x.txt", text, ""), 150, 40))


def prepare_corpora(work: Path, sizes: list[int], n_questions: int) -> dict:
    """Write corpus folders work/size-N/corpus (prefixes of one document list); pick questions."""
    meta_file = work / "corpora.json"
    key = {"sizes": sizes, "version": 2}
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if meta.get("key") == key and all((work / f"size-{n}" / "corpus").is_dir() for n in sizes):
            log("corpora: reusing " + ", ".join(f"{n}: {meta['docs'][str(n)]} docs" for n in sizes))
            return meta
    log("corpora: loading contexts")
    contexts, questions = load_contexts_and_questions()
    counts = [passages_in(c) for c in contexts]
    docs: list[tuple[str, str]] = []  # (kind, text)
    total = 0
    cut: dict[int, int] = {}
    biggest = max(sizes)
    i = 0
    while total < biggest and i < len(contexts):
        docs.append(("real", contexts[i]))
        total += counts[i]
        i += 1
        for n in sizes:
            if n not in cut and total >= n:
                cut[n] = len(docs)
    real_passages = total
    if total < biggest:
        extra = mixed_documents(contexts, int((biggest - total) / 1.05) + 50)
        for text in extra:
            docs.append(("mixed", text))
            total += passages_in(text)
            for n in sizes:
                if n not in cut and total >= n:
                    cut[n] = len(docs)
            if total >= biggest:
                break
    for n in sizes:
        cut.setdefault(n, len(docs))
    # Questions: answerable, from documents inside the smallest corpus, so every size holds them.
    smallest = min(cut.values())
    rng = random.Random(11)
    pool = [(q, a) for kind, text in docs[:smallest] if kind == "real" for q, a in questions[text]]
    rng.shuffle(pool)
    chosen = pool[:n_questions]
    for n in sizes:
        folder = work / f"size-{n}" / "corpus"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for j, (_, text) in enumerate(docs[: cut[n]]):
            (folder / f"doc{j:06d}.txt").write_text(text, encoding="utf-8")
    meta = {
        "key": key,
        "docs": {str(n): cut[n] for n in sizes},
        "mixed_docs": {str(n): sum(1 for k, _ in docs[: cut[n]] if k == "mixed") for n in sizes},
        "real_contexts": len(contexts),
        "real_passages": real_passages,
        "questions": chosen,
    }
    meta_file.write_text(json.dumps(meta))
    log("corpora: " + ", ".join(f"{n}: {cut[n]} docs" for n in sizes))
    return meta
