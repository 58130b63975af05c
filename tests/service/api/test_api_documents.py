"""Documents: list, read at a span, upload and delete behind the API key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from citeqa.service.api.routers.documents import sanitize_doc_id
from fastapi.testclient import TestClient

from tests.service.api.conftest import API_KEY, ClientFactory

SEED_ID = "000_d31740c80f9a4c4e.txt"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
LIGHTHOUSE = (
    "Harbour Lighthouse Regulations\n\n"
    "The lighthouse keeper must light the lamp every evening at sunset. "
    "The lamp of the Harbour Lighthouse burns whale-free paraffin "
    "supplied by the Port Authority of Eastmere.\n"
)


@pytest.mark.integration
def test_list_documents(client: TestClient) -> None:
    body = client.get("/v1/documents").json()
    assert body["total"] == 1
    doc = body["documents"][0]
    assert doc["id"] == SEED_ID
    assert doc["chunk_count"] > 0
    assert doc["date"] == "2022-10-15"
    assert client.get("/v1/documents", params={"offset": 1}).json()["documents"] == []
    assert client.get("/v1/documents", params={"limit": 0}).status_code == 422


@pytest.mark.integration
def test_get_document_whole_and_at_span(client: TestClient, seed_text: str) -> None:
    whole = client.get(f"/v1/documents/{SEED_ID}").json()
    assert whole["text"] == seed_text
    assert whole["span"] is None
    start = seed_text.index("Ningbo")
    span = client.get(f"/v1/documents/{SEED_ID}", params={"start": start, "end": start + 6}).json()
    assert span["text"] is None
    assert span["span"]["text"] == "Ningbo"
    assert (
        span["span"]["before"] + "Ningbo" + span["span"]["after"]
        == seed_text[span["span"]["context_start"] : span["span"]["context_end"]]
    )
    assert span["span"]["before"]


@pytest.mark.integration
def test_document_errors(client: TestClient, seed_text: str) -> None:
    assert client.get("/v1/documents/no-such.txt").json()["error"]["code"] == "document_not_found"
    assert client.get("/v1/documents/no-such.txt").status_code == 404
    for params in (
        {"start": 5},
        {"start": 10, "end": 5},
        {"start": 0, "end": len(seed_text) + 1},
        {"start": -1, "end": 2},
    ):
        response = client.get(f"/v1/documents/{SEED_ID}", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["message"]


@pytest.mark.integration
def test_writes_are_disabled_without_a_configured_key(client: TestClient) -> None:
    upload = client.post("/v1/documents", files={"file": ("a.txt", b"hello")}, headers=AUTH)
    assert upload.status_code == 403
    assert upload.json()["error"]["code"] == "writes_disabled"
    assert "CITEQA_API_KEY" in upload.json()["error"]["message"]
    delete = client.delete(f"/v1/documents/{SEED_ID}", headers=AUTH)
    assert delete.status_code == 403
    assert client.get(f"/v1/documents/{SEED_ID}").status_code == 200


@pytest.mark.integration
def test_missing_or_wrong_key_is_refused(writable_client: ClientFactory) -> None:
    client = writable_client()
    files = {"file": ("a.txt", b"hello there")}
    missing = client.post("/v1/documents", files=files)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    wrong = client.post("/v1/documents", files=files, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert client.delete(f"/v1/documents/{SEED_ID}", headers={"X-API-Key": "nope"}).status_code == 401
    assert client.get("/v1/documents").json()["total"] == 1


@pytest.mark.integration
def test_upload_ask_replace_and_delete(writable_client: ClientFactory) -> None:
    client = writable_client()
    created = client.post(
        "/v1/documents", files={"file": ("../../etc/light house.txt", LIGHTHOUSE.encode())}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    doc = created.json()["document"]
    assert doc["id"] == "light_house.txt"
    assert created.json()["replaced"] is False
    assert client.get("/v1/documents").json()["total"] == 2

    answer = client.post(
        "/v1/ask",
        json={"question": "Who supplies the paraffin for the lamp?", "document_ids": ["light_house.txt"]},
    ).json()
    assert not answer["no_answer"]
    best = answer["answers"][0]
    assert "Port Authority" in best["text"]
    assert LIGHTHOUSE[best["start"] : best["end"]] == best["text"]

    # Kept in the data directory, never in the corpus folder: re-indexing the folder keeps the upload.
    state = client.app.state.citeqa  # type: ignore[attr-defined]
    stored = state.settings.data_dir / "uploads" / "light_house.txt"
    assert stored.read_text() == LIGHTHOUSE
    assert not (state.settings.corpus_dir / "light_house.txt").exists()
    state.pipeline.index_folder()
    assert client.get("/v1/documents/light_house.txt").json()["text"] == LIGHTHOUSE

    again = client.post(
        "/v1/documents", files={"file": ("light house.txt", LIGHTHOUSE.encode())}, headers=AUTH
    )
    assert again.status_code == 201
    assert again.json()["replaced"] is True

    deleted = client.delete("/v1/documents/light_house.txt", headers={"X-API-Key": API_KEY})
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] == "light_house.txt"
    assert client.get("/v1/documents/light_house.txt").status_code == 404
    assert client.delete("/v1/documents/light_house.txt", headers=AUTH).status_code == 404
    assert not stored.exists()
    assert client.delete("/v1/documents/../../etc/passwd", headers=AUTH).status_code == 404


@pytest.mark.integration
def test_bad_uploads_are_rejected(writable_client: ClientFactory) -> None:
    client = writable_client(max_upload_bytes=4096)
    cases = [
        (client.post("/v1/documents", json={"file": "x"}, headers=AUTH), 415, "unsupported_media_type"),
        (client.post("/v1/documents", files={"file": ("tool.exe", b"MZ")}, headers=AUTH), 415, None),
        (client.post("/v1/documents", files={"file": ("empty.txt", b"")}, headers=AUTH), 422, "empty_file"),
        (client.post("/v1/documents", files={"file": (".txt", b"x")}, headers=AUTH), 422, "invalid_filename"),
        (client.post("/v1/documents", files={"doc": ("a.txt", b"x")}, headers=AUTH), 422, "missing_file"),
        (
            client.post("/v1/documents", files={"file": ("bin.txt", b"\x00\x01binary")}, headers=AUTH),
            422,
            "unreadable_document",
        ),
        (
            client.post("/v1/documents", files={"file": ("big.txt", b"word " * 2000)}, headers=AUTH),
            413,
            "payload_too_large",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["message"]
        if code:
            assert response.json()["error"]["code"] == code
    assert client.get("/v1/documents").json()["total"] == 1


@pytest.mark.integration
def test_oversize_streamed_upload_without_length_is_cut_off(writable_client: ClientFactory) -> None:
    client = writable_client(max_upload_bytes=4096)
    boundary = "xyz"

    def body() -> Iterator[bytes]:
        yield f"--{boundary}\r\n".encode()
        yield b'Content-Disposition: form-data; name="file"; filename="big.txt"\r\n\r\n'
        for _ in range(20):
            yield b"a" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/documents",
        content=body(),
        headers={**AUTH, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_document_ids_are_sanitized(tmp_path: Path) -> None:
    assert sanitize_doc_id("../../etc/pass wd.txt") == "pass_wd.txt"
    assert sanitize_doc_id("C:\\Users\\me\\report.PDF") == "report.PDF"
    assert sanitize_doc_id("x:y.txt") == "x_y.txt"  # was "y.txt": Windows' drive rule
    assert sanitize_doc_id("..hidden.md") == "hidden.md"
