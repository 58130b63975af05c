"""Synthetic corpora for the benchmark: seed sentences recombined, with names and numbers varied.

Large collections are made of *variants* of a few "template" chunks. A template is a handful of seed
sentences; a variant swaps its names and numbers. Embedding a million variants would take hours on
two cores, so a variant's vector is the template's real embedding plus a random Gaussian direction,
re-normalised (`variant_vectors`): neighbours keep the structure of real embeddings, and the report
marks such figures as synthetic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from citeqa.indexing.ingest.chunking import sentence_spans
from citeqa.indexing.ingest.loaders import content_hash, load_corpus
from citeqa.indexing.types import Chunk, Document

_NAMES = [
    "Ningbo",
    "Suzhou",
    "Wuhan",
    "Chengdu",
    "Xiamen",
    "Qingdao",
    "Hefei",
    "Dalian",
    "Kunming",
    "Harbin",
    "Nanjing",
    "Tianjin",
    "Shenyang",
    "Jinan",
    "Fuzhou",
    "Changsha",
    "Nanning",
    "Lanzhou",
    "Guiyang",
    "Taiyuan",
    "Hohhot",
    "Urumqi",
    "Lhasa",
    "Haikou",
    "Zhuhai",
    "Wenzhou",
    "Dongguan",
    "Foshan",
    "Zhengzhou",
    "Xian",
    "Shijiazhuang",
    "Nanchang",
    "Yinchuan",
    "Xining",
    "Baotou",
    "Luoyang",
    "Yantai",
    "Weifang",
    "Tangshan",
    "Linyi",
]
_CAPITALISED = re.compile(r"\b[A-Z][a-z]{3,}\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def seed_sentences(corpus: Path) -> list[str]:
    """Sentences of every loadable document under `corpus`, whitespace collapsed, short ones dropped."""
    sentences = []
    for doc in load_corpus(corpus).documents:
        for start, end in sentence_spans(doc.text):
            sentence = " ".join(doc.text[start:end].split())
            if len(sentence.split()) >= 5:
                sentences.append(sentence)
    if not sentences:
        raise ValueError(f"no sentences found under {corpus}")
    return sentences


def vary(sentence: str, rng: np.random.Generator) -> str:
    """The sentence with some capitalised words replaced by place names and every number changed."""

    def name(match: re.Match[str]) -> str:
        return str(rng.choice(_NAMES)) if rng.random() < 0.5 else match.group(0)

    def number(match: re.Match[str]) -> str:
        digits = len(match.group(0).replace(".", "").replace(",", ""))
        return str(int(rng.integers(1, 10 ** max(1, min(digits, 6)))))

    return _NUMBER.sub(number, _CAPITALISED.sub(name, sentence))


@dataclass(frozen=True)
class SyntheticCorpus:
    """Documents whose chunks are given directly (no tokenizer pass), with each chunk's template."""

    documents: list[Document]
    chunks_by_doc: dict[str, list[Chunk]]
    template_of_row: np.ndarray  # row (chunks in document order) -> template index

    @property
    def chunk_count(self) -> int:
        return len(self.template_of_row)

    def texts(self) -> Iterator[str]:
        for doc in self.documents:
            for chunk in self.chunks_by_doc[doc.id]:
                yield chunk.text


def make_templates(sentences: Sequence[str], count: int, seed: int = 0, per_chunk: int = 2) -> list[str]:
    """`count` chunk-sized texts, each `per_chunk` random seed sentences (varied)."""
    rng = np.random.default_rng(seed)
    return [
        " ".join(vary(sentences[int(i)], rng) for i in rng.integers(0, len(sentences), per_chunk))
        for _ in range(count)
    ]


def make_corpus(
    templates: Sequence[str], chunk_count: int, chunks_per_doc: int = 50, seed: int = 1
) -> SyntheticCorpus:
    """`chunk_count` chunks, variants of the templates in turn, grouped into documents."""
    rng = np.random.default_rng(seed)
    documents: list[Document] = []
    chunks_by_doc: dict[str, list[Chunk]] = {}
    template_of_row = np.arange(chunk_count, dtype=np.int64) % len(templates)
    for doc_number, first in enumerate(range(0, chunk_count, chunks_per_doc)):
        doc_id = f"synthetic-{doc_number:07d}.txt"
        pieces: list[str] = []
        chunks: list[Chunk] = []
        offset = 0
        for seq, row in enumerate(range(first, min(first + chunks_per_doc, chunk_count))):
            text = vary(templates[int(template_of_row[row])], rng)
            chunks.append(
                Chunk(
                    id=f"{doc_id}#{seq}",
                    doc_id=doc_id,
                    seq=seq,
                    start=offset,
                    end=offset + len(text),
                    text=text,
                )
            )
            pieces.append(text)
            offset += len(text) + 1
        body = " ".join(pieces)
        documents.append(
            Document(
                id=doc_id,
                text=body,
                title=f"Synthetic policy digest {doc_number}",
                content_hash=content_hash(body.encode()),
            )
        )
        chunks_by_doc[doc_id] = chunks
    return SyntheticCorpus(documents=documents, chunks_by_doc=chunks_by_doc, template_of_row=template_of_row)


def write_documents(corpus: SyntheticCorpus, folder: Path) -> None:
    """The documents as .txt files, for benchmarks that go through the real loader and chunker."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc in corpus.documents:
        (folder / doc.id).write_text(doc.text, encoding="utf-8")


def variant_vectors(
    template_vectors: np.ndarray, template_of_row: np.ndarray, noise: float = 0.6, seed: int = 2
) -> np.ndarray:
    """Unit vectors: each row's template embedding plus Gaussian noise of norm about `noise`.

    noise=0.6 puts a variant at cosine ~0.86 from its template, about what swapping names and
    numbers does to a real MiniLM embedding.
    """
    rng = np.random.default_rng(seed)
    dimension = template_vectors.shape[1]
    out = np.empty((len(template_of_row), dimension), dtype=np.float32)
    block = 65_536
    for start in range(0, len(out), block):
        rows = template_of_row[start : start + block]
        vectors = template_vectors[rows] + rng.standard_normal((len(rows), dimension), dtype=np.float32) * (
            noise / np.sqrt(dimension)
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out[start : start + len(rows)] = vectors
    return out
