"""The Evaluator end to end on real models: seed questions in process, over HTTP, and a SQuAD file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from citeqa.eval.cli import build_parser
from citeqa.eval.commands import Models, run_eval
from citeqa.eval.datasets import SEED_SET, EvalItem, EvalSet, load_jsonl
from citeqa.eval.harness import Evaluator, HttpBackend, PipelineBackend
from citeqa.eval.report import write_report
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.errors import CiteqaError
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader
from citeqa.service.settings import Settings
from citeqa.service.wire import ask_json

# Two answerable and one unanswerable question keep the run short.
SAMPLE_IDS = ("seed-001", "seed-028", "seed-005")


def _sample() -> EvalSet:
    items = [i for i in load_jsonl(SEED_SET).items if i.id in SAMPLE_IDS]
    return EvalSet("seed-sample", items)


def _evaluator(eval_set: EvalSet, pipeline: QAPipeline | None = None) -> Evaluator:
    aggregator = pipeline.aggregator if pipeline is not None else None
    return Evaluator(eval_set, top_k=Settings().top_k, aggregator=aggregator, show_progress=False)


@pytest.mark.integration
def test_evaluator_in_process_writes_reports(seed_pipeline: QAPipeline, tmp_path: Path) -> None:
    report = _evaluator(_sample(), seed_pipeline).run(PipelineBackend(seed_pipeline))
    summary = report.summary
    assert summary["n"] == 3 and summary["n_answerable"] == 2
    assert summary["citation_exact"] == 1.0
    assert summary["citations_checked"] >= 1
    assert summary["recall@10"] == 1.0  # both gold passages are in a one-document corpus's top ten
    assert 0.0 <= summary["mrr"] <= 1.0
    assert summary["p50_ms"] > 0
    confidence = report.confidence
    assert confidence is not None
    assert confidence["replay_agreement"] == 1.0  # replaying `decide` gives the live answers
    assert all(r.candidates for r in report.results)  # scored before abstention, even when it abstained
    assert 0.0 <= confidence["ece"] <= 1.0
    assert set(confidence["risk_coverage"]) == {"50%", "80%", "100%"}
    assert len(confidence["curve"]) == 101

    paths = write_report(report, tmp_path / "report")
    assert {p.name for p in paths} == {"report.json", "report.md", "latency.png", "calibration.png"}
    data = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    for key in ("n", "em", "f1", "has_ans_em", "has_ans_f1", "no_ans_accuracy", "recall@5", "mrr",
                "citation_exact", "p50_ms", "p95_ms"):  # fmt: skip
        assert key in data["summary"], key
    assert [q["id"] for q in data["questions"]] == [i.id for i in _sample().items]
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    for result in report.results:
        if not result.correct or result.abstained:
            assert f"### {result.item.id}" in markdown
    assert (tmp_path / "report" / "latency.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_a_bad_question_is_counted_not_fatal(seed_pipeline: QAPipeline) -> None:
    blank = EvalItem(id="blank", question="   ", answers=("Ningbo",), doc_id="000_d31740c80f9a4c4e.txt")
    report = _evaluator(EvalSet("blank", [blank]), seed_pipeline).run(PipelineBackend(seed_pipeline))
    assert report.summary["errors"] == 1
    assert report.results[0].error == "the question is empty"
    assert report.summary["em"] == 0.0


@pytest.fixture()
def http_service(seed_pipeline: QAPipeline) -> Iterator[str]:
    """A real HTTP server answering POST /v1/ask with the pipeline's ask_json (no /v1/search).

    Its first answer is a 503, as a service still loading its models gives.
    """
    loading = [True]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/ask":
                self.send_response(404)
                self.end_headers()
                return
            if loading.pop() if loading else False:
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            payload = json.dumps(ask_json(seed_pipeline.ask(body["question"], top_k=body["top_k"]))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.e2e
def test_evaluator_over_http(seed_pipeline: QAPipeline, http_service: str) -> None:
    settings = seed_pipeline.settings
    client = HttpBackend(http_service, settings.corpus_dir)
    try:
        report = _evaluator(_sample()).run(client)
    finally:
        client.close()
    assert report.summary["errors"] == 0  # the first question waited out the 503
    assert report.summary["citation_exact"] == 1.0  # checked against the local copy of the corpus
    assert report.confidence is None  # no candidates over HTTP: only the answers given
    # Without /v1/search, retrieval is scored on the top_k passages that /v1/ask returned.
    assert all(len(r.passages) <= settings.top_k for r in report.results)
    assert all(r.timings_ms["total"] == r.timings_ms["client"] for r in report.results)


@pytest.mark.integration
def test_squad_format_end_to_end_with_gate(
    tmp_path: Path, tiny_squad: Path, embedder: Embedder, reader: Reader, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tiny_squad
    baseline = tmp_path / "baseline.json"
    user_data = tmp_path / "user-data"
    settings = Settings(device="cpu", data_dir=user_data)
    models = Models(embedder=embedder, reader=reader)
    parser, _ = build_parser()
    argv = ["eval", "--dataset", str(dataset), "--format", "squad", "--report", str(tmp_path / "r1")]
    argv += ["--baseline", str(baseline), "--check"]
    # The first run writes the baseline and must pass the gate against its own numbers.
    assert run_eval(parser.parse_args([*argv, "--update-baseline"]), settings, models) == 0
    assert not user_data.exists()  # the SQuAD corpus went to a temporary index, not the user's
    report = json.loads((tmp_path / "r1" / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"]
    assert summary["n"] == 3 and summary["n_unanswerable"] == 1
    assert summary["citation_exact"] in (1.0, None)  # None: the system abstained on all three
    assert summary["recall@10"] == 1.0  # two paragraphs: every gold paragraph is retrieved
    misses = [q["id"] for q in report["questions"] if q["em"] < 1.0 or q["abstained"]]
    markdown = (tmp_path / "r1" / "report.md").read_text(encoding="utf-8")
    assert markdown.count("\n### ") == len(misses)

    # A baseline out of reach fails the gate and names the metric.
    raised = json.loads(baseline.read_text(encoding="utf-8"))
    assert raised["dataset"] == "tiny-squad.json"
    raised["summary"]["recall@5"] = 2.0
    baseline.write_text(json.dumps(raised), encoding="utf-8")
    capsys.readouterr()
    assert run_eval(parser.parse_args(argv), settings, models) == 1
    assert "recall@5 regressed" in capsys.readouterr().err


@pytest.mark.integration
def test_a_question_file_about_documents_not_in_the_index_stops(
    tmp_path: Path, seed_pipeline: QAPipeline, embedder: Embedder, reader: Reader
) -> None:
    """Without a docs/ folder beside it, a set was asked over the configured index (the seeds) and scored 0%
    with one warning line."""
    questions = tmp_path / "mine.jsonl"
    record = {"id": "q1", "question": "How often is the tachograph downloaded?", "answers": ["28 days"]}
    questions.write_text(json.dumps({**record, "doc_id": "fleet.docx"}) + "\n", encoding="utf-8")
    parser, _ = build_parser()
    args = parser.parse_args(["eval", "--dataset", str(questions), "--report", str(tmp_path / "r")])
    with pytest.raises(CiteqaError, match=r"none of the 1 documents .* docs/ folder beside the question"):
        run_eval(args, seed_pipeline.settings, Models(embedder=embedder, reader=reader))
    assert not (tmp_path / "r").exists()
    # Over a data directory with no index it is refused too: the seeds were indexed into it first.
    empty = Settings(device="cpu", data_dir=tmp_path / "empty")
    with pytest.raises(CiteqaError, match="no index at"):
        run_eval(args, empty, Models(embedder=embedder, reader=reader))
    assert not (tmp_path / "empty" / "index").exists()
