"""Documents: list, read (whole or a cited span with context), upload and delete (API key)."""

from __future__ import annotations

import re
import time
import unicodedata
from typing import Annotated

from citeqa.indexing.ingest.build import BuildReport
from citeqa.indexing.ingest.loaders import SUPPORTED_SUFFIXES
from citeqa.service.api.internal.deps import ApiKeyDep, PipelineDep, StateDep
from citeqa.service.api.internal.errors import ApiError
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.wire import (
    MAX_OFFSET,
    DeleteResponse,
    DocumentList,
    DocumentOut,
    DocumentSpan,
    DocumentSummary,
    PageOut,
    UploadResponse,
    document_summary,
    document_url,
    error_responses,
)
from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile

router = APIRouter(tags=["documents"])

MAX_PAGE = 200
SPAN_CONTEXT_CHARS = 400
# \w is Unicode-aware: letters and digits of any script stay (`aé.txt` and `añ.txt` are two names).
_UNSAFE = re.compile(r"[^\w.-]+")
MAX_ID_BYTES = 200  # file systems allow 255 bytes a name; UTF-8 takes up to 4 a character


def _base_name(filename: str) -> str:
    # Both separators: a client on Windows may send C:\\path\\name.txt. Not Windows' drive rule, which made
    # "x:y.txt" the name "y.txt" (another document's, perhaps): the colon becomes "_" with the rest.
    return unicodedata.normalize("NFC", re.split(r"[\\/]", filename)[-1])


def sanitize_doc_id(filename: str) -> str:
    """The uploaded file's own name, made safe: no directories, no hidden files, no control or path
    characters; Unicode kept (NFC); a long name is shortened before its type suffix, never through it."""
    name = _base_name(filename)
    name = _UNSAFE.sub("_", name).strip("._-") if name else ""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem.strip("._-"):
        raise ApiError(422, "invalid_filename", f"cannot make a document id from the file name {filename!r}")
    if f".{suffix.lower()}" not in SUPPORTED_SUFFIXES:
        raise ApiError(
            415,
            "unsupported_document_type",
            f"{name[:100]}: unsupported file type .{suffix[:20]}; "
            f"send one of {', '.join(SUPPORTED_SUFFIXES)}",
        )
    budget = MAX_ID_BYTES - len(suffix.encode()) - 1
    stem = stem.encode()[:budget].decode("utf-8", "ignore").rstrip("._-")
    return f"{stem}.{suffix}"


def _check_name_is_free(pipeline: QAPipeline, doc_id: str, original: str) -> None:
    """Refuse an upload that would silently replace a document it does not name."""
    sources = pipeline.sources()
    in_folder = sources.in_folder(doc_id) or _indexed_from_a_folder(pipeline, doc_id)
    if in_folder and doc_id not in sources.deleted():
        raise ApiError(
            409,
            "document_in_corpus",
            f"{doc_id} is a document of the corpus folder; delete it first to replace it with an upload",
        )
    renamed = doc_id != original and sources.upload_names().get(doc_id) != original
    if renamed and pipeline.has_document(doc_id):
        raise ApiError(
            409,
            "name_collision",
            f"the file name {original!r} becomes the id {doc_id}, which another document has; "
            "rename the file",
        )


def _made(report: BuildReport, pipeline: QAPipeline) -> str:
    """The index version an update made."""
    return report.manifest.version or pipeline.index_version


def _indexed_from_a_folder(pipeline: QAPipeline, doc_id: str) -> bool:
    """Whether the index holds `doc_id` from a folder's file (it has a source; uploads have none): on a
    shared store that folder may have been indexed through another data directory than this replica's."""
    document = pipeline.index.snapshot.document(doc_id) if pipeline.ready else None
    return document is not None and document.source is not None


@router.get("/v1/documents", response_model=DocumentList, responses=error_responses(422, 503))
async def list_documents(
    state: StateDep,
    pipeline: PipelineDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> DocumentList:
    def page() -> DocumentList:
        found = pipeline.documents(offset=offset, limit=limit)
        return DocumentList(
            documents=[document_summary(i) for i in found.documents],
            total=found.total,
            offset=found.offset,
            limit=found.limit,
            index_version=found.index_version,
        )

    return await state.infer(page)


@router.get(
    "/v1/documents/{doc_id:path}", response_model=DocumentOut, responses=error_responses(404, 422, 503)
)
async def get_document(
    doc_id: str,
    state: StateDep,
    pipeline: PipelineDep,
    start: Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="span start (with end)")] = None,
    end: Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="span end (with start)")] = None,
    context: Annotated[int, Query(ge=0, le=5000, description="characters of context each side")] = (
        SPAN_CONTEXT_CHARS
    ),
) -> DocumentOut:
    if (start is None) != (end is None):
        raise ApiError(422, "invalid_span", "give both start and end, or neither")
    doc, version = await state.infer(lambda: pipeline.document(doc_id))
    span = None
    if start is not None and end is not None:
        if start > end:
            raise ApiError(422, "invalid_span", f"span {start}-{end} ends before it starts")
        if end > len(doc.text):
            raise ApiError(
                422, "invalid_span", f"span {start}-{end} is not inside the document (0-{len(doc.text)})"
            )
        lo, hi = max(0, start - context), min(len(doc.text), end + context)
        span = DocumentSpan(
            start=start,
            end=end,
            text=doc.text[start:end],
            before=doc.text[lo:start],
            after=doc.text[end:hi],
            context_start=lo,
            context_end=hi,
            page=doc.page_at(start),
        )
    return DocumentOut(
        id=doc.id,
        title=doc.title,
        date=doc.date,
        length=len(doc.text),
        content_hash=doc.content_hash,
        pages=[PageOut(number=p.number, start=p.start, end=p.end) for p in doc.pages],
        text=None if span else doc.text,
        span=span,
        index_version=version,
    )


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "/v1/documents",
    response_model=UploadResponse,
    status_code=201,
    dependencies=[ApiKeyDep],
    responses=error_responses(400, 401, 403, 409, 413, 415, 422, 429, 503, 507),
    openapi_extra=_UPLOAD_BODY,
)
async def upload_document(request: Request, state: StateDep, pipeline: PipelineDep) -> UploadResponse:
    """Add or replace one document (multipart field `file`); the index is updated incrementally.

    The file is kept in the data directory's uploads, so that re-indexing the corpus folder keeps it.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            415, "unsupported_media_type", "upload the document as multipart/form-data with a 'file' field"
        )
    limit = state.settings.max_upload_bytes
    async with request.form(max_files=1, max_fields=4, max_part_size=limit) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "missing_file", "the form has no file in its 'file' field")
        doc_id = sanitize_doc_id(upload.filename or "")
        original = _base_name(upload.filename or "")
        data = await upload.read()
    if not data:
        raise ApiError(422, "empty_file", f"{doc_id} is empty")
    # Parsed here, off the update worker: a file that cannot be read gets its 422 at once instead of
    # waiting behind the uploads queued for the single writer.
    parsed = await state.io(lambda: pipeline.read_upload(doc_id, data))

    def add() -> UploadResponse:
        _check_name_is_free(pipeline, doc_id, original)
        started = time.perf_counter()
        document, report = pipeline.upload_document(doc_id, data, original, document=parsed)
        state.metrics.stage_latency.labels(stage="index_update").observe(time.perf_counter() - started)
        summary = DocumentSummary(
            id=doc_id,
            title=document.title,
            date=document.date,
            chunk_count=pipeline.chunk_count(doc_id),
            length=len(document.text),
            url=document_url(doc_id),
        )
        # From the write itself, made under the store's lock: another replica's upload of the same name
        # just before is "replaced", and the version is the one this write made, not a later one.
        replaced = doc_id not in report.added
        return UploadResponse(document=summary, replaced=replaced, index_version=_made(report, pipeline))

    return await state.update(add, request)


@router.delete(
    "/v1/documents/{doc_id:path}",
    response_model=DeleteResponse,
    dependencies=[ApiKeyDep],
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
)
async def delete_document(
    doc_id: str, request: Request, state: StateDep, pipeline: PipelineDep
) -> DeleteResponse:
    def delete() -> DeleteResponse:
        started = time.perf_counter()
        report = pipeline.delete_document(doc_id)
        state.metrics.stage_latency.labels(stage="index_update").observe(time.perf_counter() - started)
        return DeleteResponse(deleted=doc_id, index_version=_made(report, pipeline))

    return await state.update(delete, request)
