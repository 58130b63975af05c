"""The benchmark's parts on tiny sizes: report files and keys (no timing assertions)."""

from __future__ import annotations

import json
import mmap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from citeqa.eval.bench.cold_start import HEAVY, measure_cold_start
from citeqa.eval.bench.corpus import make_corpus, make_templates, seed_sentences, variant_vectors
from citeqa.eval.bench.measure import MemorySampler, percentile, summarize_ms
from citeqa.eval.bench.quality import load_questions, score
from citeqa.eval.bench.report import runtimes_table, write_report
from citeqa.eval.bench.run import bench_indexing, bench_seed
from citeqa.eval.bench.scale import exact_top_k, run_size
from citeqa.eval.metrics import f1_score
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.openvino_runtime import openvino_preferred
from citeqa.service.qa.reader import Reader
from citeqa.service.settings import REPO_ROOT, Settings

from citeqa.cli import main

SUMMARY_KEYS = {"n", "p50", "p95", "mean", "max"}


@pytest.fixture(scope="module")
def templates() -> list[str]:
    return make_templates(seed_sentences(REPO_ROOT / "seeds"), 40)


def test_synthetic_corpus_chunks_point_into_their_documents(templates: list[str]) -> None:
    corpus = make_corpus(templates, 130, chunks_per_doc=50)
    assert corpus.chunk_count == 130 and len(corpus.documents) == 3
    for doc in corpus.documents:
        for chunk in corpus.chunks_by_doc[doc.id]:
            assert doc.text[chunk.start : chunk.end] == chunk.text
    assert len(set(corpus.texts())) > 100  # names and numbers vary between variants of one template


def test_variant_vectors_are_unit_and_near_their_template() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((5, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    rows = np.arange(50) % 5
    vectors = variant_vectors(base, rows)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    own = (vectors * base[rows]).sum(axis=1)
    assert own.min() > 0.7


def test_exact_top_k_matches_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1000, 16)).astype(np.float32)
    queries = rng.standard_normal((4, 16)).astype(np.float32)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert np.array_equal(exact_top_k(vectors, queries, 10, block=128), expected)


def test_summary_and_quality_scores() -> None:
    summary = summarize_ms([5.0, 1.0, 3.0, 2.0, 4.0])
    assert set(summary) == SUMMARY_KEYS and summary["p50"] == 3.0 and summary["max"] == 5.0
    assert f1_score("the city of Ningbo", ["Ningbo"]) == pytest.approx(0.5)  # P 1/3, R 1
    assert len(load_questions()) == 99


@pytest.mark.integration
def test_run_size_builds_the_compressed_index_and_reports_recall(
    tmp_path: Path, embedder: Embedder, reader: Reader, templates: list[str]
) -> None:
    settings = Settings(device="cpu", index_type="ivf_sq8", verify_index=False, data_dir=tmp_path)
    row = run_size(
        400,
        templates=templates,
        template_vectors=embedder.embed(templates),
        real_limit=100,
        embedder=embedder,
        reader=reader,
        base_settings=settings,
        questions=[item.question for item in load_questions()[:4]],
        work_dir=tmp_path,
    )
    assert row["index_type"] == "ivf_sq8" and row["vectors"] == "synthetic"
    assert 0.0 <= row["recall_at_10"] <= 1.0
    assert row["index_bytes_per_chunk"] < 384 * 4  # SQ8 codes, not float32 vectors
    for key in ("search_ms", "dense_ms", "bm25_ms", "embed_query_ms"):
        assert set(row[key]) == SUMMARY_KEYS and row[key]["n"] == 4
    assert not (tmp_path / "index-400").exists()  # each size cleans up after itself


@pytest.mark.integration
def test_seed_and_indexing_sections_and_report_files(
    tmp_path: Path, make_pipeline: Any, embedder: Embedder, reader: Reader, templates: list[str]
) -> None:
    from citeqa.service.qa.pipeline import QAPipeline

    def pipeline_for(**overrides: Any) -> QAPipeline:
        return QAPipeline(Settings(device="cpu", **overrides), embedder=embedder, reader=reader)

    indexing = bench_indexing(pipeline_for, templates, 60, tmp_path)
    assert indexing["chunks"] > 0 and indexing["chunks_per_s"] > 0
    assert indexing["rss_peak_mib"] >= indexing["rss_before_mib"]

    items = load_questions()[:3]
    seed = bench_seed(make_pipeline(), items, passes=1)
    assert set(seed["ask_ms"]) == {"retrieve", "read", "total"}
    assert seed["ask_ms"]["total"]["n"] == 3 and seed["ask_cached_ms"]["n"] == 3
    assert seed["quality"]["answerable"] + seed["quality"]["unanswerable"] == 3

    report = {
        "quick": True,
        "device": "cpu",
        "seconds": 1.0,
        "indexing": indexing,
        "seed": seed,
        "cold_start": {"runs": 1, "seconds": [1.25], "median_s": 1.25, "imported": []},
        "http": None,
        "machine": {
            "cpu": "test",
            "cpu_count": 2,
            "memory_gib": 1,
            "torch": "x",
            "torch_threads": 1,
            "faiss": "y",
            "load_average_at_start": [0, 0, 0],
        },
        "scale": {
            "rows": [
                {
                    "size": s,
                    "vectors": "synthetic",
                    "index_type": "flat",
                    "write_s": 0.1,
                    "recall_at_10": 1.0,
                    "index_bytes_per_chunk": 1536.0,
                    "bm25_mib": 0.1,
                    **{
                        k: summarize_ms([1.0, 2.0])
                        for k in ("search_ms", "dense_ms", "bm25_ms", "embed_query_ms")
                    },
                }
                for s in (100, 1000)
            ]
        },
    }
    paths = write_report(report, tmp_path / "report")
    assert [p.name for p in paths] == ["report.json", "report.md", "latency.png"]
    assert json.loads(paths[0].read_text())["seed"]["quality"] == seed["quality"]
    text = paths[1].read_text()
    assert "| chunks | vectors | index |" in text and "| 1,000 | synthetic | flat |" in text
    assert "**1.25 s** (median of 1: [1.25])" in text and "imported: none of torch" in text
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_a_cold_start_is_a_fresh_process_answering_one_question(
    make_pipeline: Any, openvino_reader_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = make_pipeline()
    monkeypatch.setenv("CITEQA_READER_PATH", str(openvino_reader_dir))  # conversions kept: no torch needed
    cold = measure_cold_start(pipeline.settings.data_dir, "How many pilot cities will there be?", runs=1)
    assert cold["runs"] == 1 and len(cold["seconds"]) == 1 and cold["median_s"] > 0
    assert set(cold["imported"]) <= set(HEAVY)
    if openvino_preferred("auto", "auto"):
        assert cold["imported"] == []
    with pytest.raises(RuntimeError, match="cold ask"):
        measure_cold_start(pipeline.settings.data_dir / "missing", "How many pilot cities?", runs=1)


def test_quality_score_counts_abstentions() -> None:
    from citeqa.service.qa.types import AskResult

    items = load_questions()
    answerable = next(i for i in items if i.answerable)
    unanswerable = next(i for i in items if not i.answerable)
    results = [
        AskResult(question="", answers=[], passages=[], no_answer=True, message=""),
        AskResult(question="", answers=[], passages=[], no_answer=True, message=""),
    ]
    scored = score([answerable, unanswerable], results)
    assert scored["em"] == 0.0 and scored["abstained_on_unanswerable"] == 1


def test_cli_rejects_tiny_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--sizes", "5"]) == 2
    assert "--sizes" in capsys.readouterr().err


def test_percentile_is_nearest_rank_and_the_sampler_sees_memory_grow() -> None:
    assert [percentile([4.0, 1.0, 3.0, 2.0], q) for q in (0.25, 0.5, 0.95)] == [1.0, 2.0, 4.0]
    # Fresh pages from the kernel: a malloc'd block can reuse freed, still-resident heap that earlier
    # tests left behind (the RSS then does not grow, and this failed after the model tests).
    block = mmap.mmap(-1, 64 * 2**20)
    with MemorySampler(interval=0.01) as memory:
        for offset in range(0, len(block), 4096):
            block[offset] = 1
        time.sleep(0.05)
    assert memory.peak - memory.samples[0][1] >= 32 * 2**20
    block.close()


@pytest.mark.e2e
@pytest.mark.postgres
def test_store_bench_measures_both_stores_and_sweeps_on_one_build(database_url: str, tmp_path: Path) -> None:
    report = tmp_path / "stores.json"
    argv = ["bench-stores", "--sizes", "1500", "--ef-search", "40,200", "--database-url", database_url]
    assert main([*argv, "--report", str(report)]) == 0
    rows = json.loads(report.read_text())["rows"]
    assert [(r["store"], r["index"], r["size"]) for r in rows] == [
        ("local", "flat", 1500),
        ("postgres (ef_search 40, nprobe auto)", "pgvector-hnsw", 1500),
        ("postgres (ef_search 200, nprobe auto)", "pgvector-hnsw", 1500),
    ]
    assert rows[0]["recall_at_10"] == 1.0  # exact search
    assert all(r["recall_at_10"] >= 0.9 for r in rows)
    assert "ingest_chunks_per_s" in rows[1] and "ingest_chunks_per_s" not in rows[2]  # one build
    assert all(set(r["search_ms"]) == SUMMARY_KEYS for r in rows)


@pytest.mark.integration
def test_reader_runtimes_side_by_side(make_pipeline: Any, exported_reader_dir: Path) -> None:
    from citeqa.eval.bench.readers import bench_runtimes
    from citeqa.service.qa.pipeline import QAPipeline

    seed = make_pipeline()
    settings = Settings(device="cpu", reader_path=exported_reader_dir)

    def seed_pipeline_with(reader: Any, embedder: Any, **overrides: Any) -> QAPipeline:
        update = {"reader_path": exported_reader_dir, **overrides}
        return QAPipeline(seed.settings.model_copy(update=update), embedder=embedder, reader=reader)

    items = load_questions()[:3]
    # Two client counts, not the bench's 1, 5 and 20: the rounds at 20 were most of this test's minute.
    section = bench_runtimes(
        seed_pipeline_with, settings, items, asks_per_level=6, log=lambda _: None, clients_levels=(1, 3)
    )
    rows = {row["label"]: row for row in section["rows"]}
    assert list(rows) == [
        "torch, unpadded",
        "torch",
        "torch, batched",
        "openvino",
        "openvino, batched",
        "onnx int8",
        "onnx int8, batched",
    ]
    assert rows["openvino, batched"]["batch_windows"] == 32 and rows["torch"]["batch_windows"] == 0
    assert rows["onnx int8, batched"]["reader"]["runtime"] == "onnxruntime"
    assert rows["openvino"]["reader"]["runtime"] == "openvino"
    assert rows["torch"]["embedder_runtime"] == "torch" and rows["openvino"]["embedder_runtime"] == "openvino"
    assert rows["torch, batched"]["reader"]["runtime"] == "torch"
    assert rows["torch, unpadded"]["reader"]["pad_to_multiple_of"] == 1
    assert rows["openvino"]["reader"]["pad_to_multiple_of"] == 16
    for row in rows.values():
        assert [t["clients"] for t in row["throughput"]] == [1, 3]
        assert all(t["errors"] == 0 and t["answers_per_s"] > 0 for t in row["throughput"])
        assert row["read_per_passage_ms"]["n"] == 3
    table = "\n".join(runtimes_table(section))
    assert "| onnx int8, batched | onnxruntime int8," in table
