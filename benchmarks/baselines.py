"""Baselines on the same passages and weights: the transformers question-answering pipeline
against our reader, and brute-force NumPy inner products against FAISS dense search."""

from __future__ import annotations

import statistics
import time


class PipelineBaseline:
    """What `transformers.pipeline("question-answering")` did (transformers 4.x; 5.x removed that task).

    Per context: tokenise into windows without padding, one forward pass per window (the
    pipeline's default batch size of 1), softmax-normalise start/end over the context tokens,
    score every span by the outer product (`select_starts_ends`, still shipped in transformers'
    document-QA pipeline), keep the best span. `batch=True` puts all windows in one padded batch.
    The pipeline's own per-item overhead (ChunkPipeline, SquadExample) is left out, which
    flatters the baseline.
    """

    def __init__(self, model, tokenizer, max_seq_len: int, doc_stride: int, max_answer_len: int) -> None:
        import torch
        from transformers.pipelines.document_question_answering import (
            select_starts_ends,
        )

        self.torch, self.select = torch, select_starts_ends
        self.model, self.tokenizer = model, tokenizer
        self.max_seq_len, self.doc_stride, self.max_answer_len = max_seq_len, doc_stride, max_answer_len

    def __call__(self, question: str, contexts: list[str], batch: bool = False) -> tuple[str, float]:
        import numpy as np

        torch = self.torch
        windows = []  # (context index, encoding of one window)
        encs = []
        for ci, context in enumerate(contexts):
            enc = self.tokenizer(question, context, truncation="only_second", max_length=self.max_seq_len,
                                 stride=self.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                                 padding="longest" if batch else "do_not_pad")
            encs.append(enc)
            for w in range(len(enc["input_ids"])):
                windows.append((ci, w))
        logits = []
        with torch.inference_mode():
            if batch:
                big = self.tokenizer([question] * len(contexts), contexts, truncation="only_second",
                                     max_length=self.max_seq_len, stride=self.doc_stride,
                                     return_overflowing_tokens=True, padding="longest", return_tensors="pt")
                out = self.model(**{k: big[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in big})
                logits = [(out.start_logits[i].float().numpy(), out.end_logits[i].float().numpy())
                          for i in range(len(windows))]
            else:
                for ci, w in windows:
                    e = encs[ci]
                    out = self.model(**{k: torch.tensor([e[k][w]]) for k in ("input_ids", "attention_mask", "token_type_ids")
                                        if k in e})
                    logits.append((out.start_logits[0].float().numpy(), out.end_logits[0].float().numpy()))
        best = ("", -1.0)
        for (ci, w), (start, end) in zip(windows, logits):
            e = encs[ci]
            n = len(e["input_ids"][w])
            start, end = start[:n], end[:n]
            p_mask = np.array([0 if s == 1 else 1 for s in e.sequence_ids(w)])
            starts, ends, scores, _ = self.select(start[None], end[None], p_mask[None], np.ones((1, n), dtype=np.int64),
                                                  max_answer_len=self.max_answer_len)
            if len(scores) and float(scores[0]) > best[1]:
                offsets = e["offset_mapping"][w]
                best = (contexts[ci][offsets[starts[0]][0]: offsets[ends[0]][1]], float(scores[0]))
        return best


def compare_with_baselines(engine, rows: list[dict], np) -> dict:
    """The transformers QA pipeline vs our reader on the same passages; NumPy vs FAISS dense search."""
    from qa.store import faiss_id

    s = engine.settings
    store = engine.store
    by_id = {p.id: p for p in store.passages}
    pipe = PipelineBaseline(engine.reader.model, engine.reader.tokenizer, s.window_tokens, s.window_stride,
                            s.max_answer_tokens)
    ours, pipe1, pipek, agree = [], [], [], 0
    warm = [by_id[i].text for i in rows[0]["hits"]]
    pipe(rows[0]["q"], warm)
    pipe(rows[0]["q"], warm, batch=True)
    for r in rows:
        contexts = [by_id[i].text for i in r["hits"]]
        t = time.perf_counter()
        spans = engine.reader.read(r["q"], contexts)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        best_pipe, _ = pipe(r["q"], contexts)
        pipe1.append(time.perf_counter() - t)
        t = time.perf_counter()
        pipe(r["q"], contexts, batch=True)
        pipek.append(time.perf_counter() - t)
        best_ours = contexts[spans[0].text_index][spans[0].start : spans[0].end] if spans else ""
        agree += best_pipe.strip() == best_ours.strip()
    # Dense search: FAISS (the store) vs brute force NumPy on the same vectors.
    n = store.faiss_index.ntotal
    ids = faiss_id
    matrix = np.vstack([store.faiss_index.reconstruct(ids(p.id)) for p in store.passages]).astype(np.float32)
    qv = engine.embedder.encode([r["q"] for r in rows])
    k = max(s.retrieve_k, s.top_k)
    faiss_t, numpy_t, same = [], [], 0
    for v in qv:
        t = time.perf_counter()
        got = store.search(v[None, :], k)[0]
        faiss_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        scores = matrix @ v
        top = np.argpartition(-scores, min(k, n - 1))[:k] if n > k else np.arange(n)
        top = top[np.argsort(-scores[top])]
        numpy_t.append(time.perf_counter() - t)
        same += set(p for p, _ in got[:10]) == set(top[:10].tolist())
    med = statistics.median
    return {
        "pipe_bs1_ms": med(pipe1) * 1000,
        "pipe_bsk_ms": med(pipek) * 1000,
        "ours_read_ms": med(ours) * 1000,
        "pipe_agree": agree / len(rows),
        "faiss_ms": med(faiss_t) * 1000,
        "numpy_ms": med(numpy_t) * 1000,
        "dense_top10_same": same / len(rows),
        "baseline_n": len(rows),
    }
