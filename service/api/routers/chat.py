"""OpenAI-compatible chat: the last user message is the question; the reply is a cited Markdown answer."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

from citeqa.service.api.internal.deps import PipelineDep, StateDep, require_json
from citeqa.service.api.internal.errors import ApiError
from citeqa.service.qa.query import Query
from citeqa.service.qa.types import AskResult
from citeqa.service.settings import Settings
from citeqa.service.wire import (
    ChatChoice,
    ChatCitation,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatReplyMessage,
    ModelCard,
    ModelList,
    document_url,
    error_responses,
    section_label,
    shown_probability,
)
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

router = APIRouter(tags=["chat"])

NO_ANSWER_REPLY = "I found no answer in the documents."
NOT_SURE_REPLY = "**Not sure.** Low confidence — check the source."
# A chat tool cannot always send request fields: this reply, alone, asks again for the best guess.
BEST_GUESS_WORDS = ("best guess", "guess")
BEST_GUESS_HINT = "Reply *best guess* to see the most likely answer anyway, marked not sure."
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")
_STARTED = int(time.time())


def escape_markdown(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def chat_citations(result: AskResult, base_url: str) -> list[ChatCitation]:
    return [
        ChatCitation(
            number=n,
            doc_id=a.doc_id,
            title=a.citation.title,
            section=list(a.citation.section),
            start=a.start,
            end=a.end,
            quote=a.text,
            sentence=a.citation.sentence.text,
            url=document_url(a.doc_id, a.start, a.end, base=base_url),
            score=a.score,
            confidence_level=a.confidence_level,
        )
        for n, a in enumerate(result.answers, start=1)
    ]


def _quoted_sentence(result: AskResult, number: int) -> str:
    """The answer's sentence with the answer itself in bold."""
    citation = result.answers[number - 1].citation
    sentence = citation.sentence
    lo, hi = citation.start - sentence.start, citation.end - sentence.start
    if not (0 <= lo <= hi <= len(sentence.text)):
        return escape_markdown(sentence.text)
    return (
        escape_markdown(sentence.text[:lo])
        + (" " if lo and sentence.text[lo - 1].isspace() else "")
        + f"**{escape_markdown(sentence.text[lo:hi])}**"
        + (" " if hi < len(sentence.text) and sentence.text[hi].isspace() else "")
        + escape_markdown(sentence.text[hi:])
    )


def render_markdown(result: AskResult, citations: list[ChatCitation], base_url: str) -> str:
    """A confident answer in bold; a "not sure" one said to be so, with its probability, before its
    sources; no answer said as what it is: none found, not proof that the documents hold none."""
    if result.no_answer:
        reply = NO_ANSWER_REPLY
        if result.passages:
            closest = result.passages[0]
            chunk = closest.chunk
            link = document_url(chunk.doc_id, chunk.start, chunk.end, base=base_url)
            reply += f"\n\nThe closest passage is in *{escape_markdown(closest.title)}* ([open]({link}))."
            if result.candidates:
                reply += f" {BEST_GUESS_HINT}"
        return reply
    best, *others = citations
    lines = []
    if best.confidence_level == "not_sure":
        lines.append(f"{NOT_SURE_REPLY} Best guess, probability {shown_probability(best.score)}:\n")
    lines.append(f"**{escape_markdown(best.quote)}** [{best.number}]")
    if others:
        alternatives = "; ".join(
            f"{escape_markdown(c.quote)} [{c.number}]{_not_sure(c, ' (', ')')}" for c in others
        )
        lines.append(f"\nOther candidate answers: {alternatives}")
    lines.append("\n**Sources**\n")
    for c in citations:
        section = f", {escape_markdown(section_label(c.section))}" if c.section else ""
        lines.append(
            f"{c.number}. *{escape_markdown(c.title)}*{section}, characters {c.start}–{c.end} "
            f"(probability {shown_probability(c.score)}{_not_sure(c, ', ')}): "
            f"“{_quoted_sentence(result, c.number)}” [open]({c.url})"
        )
    return "\n".join(lines)


def _not_sure(citation: ChatCitation, before: str, after: str = "") -> str:
    return f"{before}not sure{after}" if citation.confidence_level == "not_sure" else ""


def _question(body: ChatCompletionRequest) -> tuple[str, bool]:
    """The question to answer, and whether the best guess is asked for: by the request's `best_guess`,
    or by a last user message that only says "best guess" (then the question is the one before it)."""
    questions = [m.text() for m in body.messages if m.role == "user"]
    if not questions:
        raise ApiError(422, "no_user_message", "the messages hold no user message to answer")
    last = questions[-1]
    if _asks_for_best_guess(last):
        if len(questions) < 2:
            raise ApiError(422, "no_user_message", "a best guess for what? Ask a question first")
        return questions[-2], True
    return last, body.best_guess


def _asks_for_best_guess(text: str) -> bool:
    words = " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())
    return words in BEST_GUESS_WORDS


def _base_url(request: Request, settings: Settings) -> str:
    """CITEQA_PUBLIC_URL, else the request's Host when the allow-list vetted it, else the bound address:
    never a name an unchecked client made up."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    if settings.host_allow_list is not None:
        return str(request.base_url).rstrip("/")
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{request.url.scheme}://{host}:{settings.port}"


def _stream(completion: ChatCompletionResponse) -> Iterator[str]:
    def event(delta: dict[str, str], finish: str | None, **extra: object) -> str:
        chunk = {
            "id": completion.id,
            "object": "chat.completion.chunk",
            "created": completion.created,
            "model": completion.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""}, None)
    content = completion.choices[0].message.content
    # Line by line, so that a chat tool renders the answer before its sources.
    for piece in re.findall(r"[^\n]*\n?", content):
        if piece:
            yield event({"content": piece}, None)
    yield event(
        {},
        "stop",
        citations=[c.model_dump() for c in completion.citations],
        no_answer=completion.no_answer,
        confidence_level=completion.confidence_level,
    )
    yield "data: [DONE]\n\n"


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionResponse,
    dependencies=[require_json],
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or server-sent events with stream"},
        **error_responses(400, 413, 415, 422, 429, 503),
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, state: StateDep, pipeline: PipelineDep
) -> ChatCompletionResponse | StreamingResponse:
    question, best_guess = _question(body)
    result = await state.query(request, lambda: pipeline.ask(Query(question, best_guess=best_guess)))
    base_url = _base_url(request, state.settings)
    citations = chat_citations(result, base_url)
    completion = ChatCompletionResponse(
        id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=body.model or state.settings.chat_model_name,
        choices=[ChatChoice(message=ChatReplyMessage(content=render_markdown(result, citations, base_url)))],
        citations=citations,
        no_answer=result.no_answer,
        confidence_level=result.confidence_level,
    )
    if body.stream:
        return StreamingResponse(
            _stream(completion),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return completion


@router.get("/v1/models", response_model=ModelList)
async def models(state: StateDep) -> ModelList:
    return ModelList(data=[ModelCard(id=state.settings.chat_model_name, created=_STARTED)])
