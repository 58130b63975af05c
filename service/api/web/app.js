// citeqa's page: no build step, no dependencies. All text goes in through textContent (never innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function highlighted(text, start, end) {
  // `text` with text[start:end] marked; offsets are relative to `text`.
  const frag = document.createDocumentFragment();
  frag.append(text.slice(0, start), el("mark", { textContent: text.slice(start, end) }), text.slice(end));
  return frag;
}

function setStatus(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

function citationLink(citation, label) {
  const link = el("a", { href: `#doc=${encodeURIComponent(citation.doc_id)}&start=${citation.start}&end=${citation.end}`,
                         textContent: label });
  link.addEventListener("click", (event) => {
    event.preventDefault();
    history.replaceState(null, "", link.getAttribute("href"));
    openDocument(citation.doc_id, citation.start, citation.end);
  });
  return link;
}

function feedbackButtons(question, answer, prompt) {
  const box = el("span", { className: "feedback" });
  const send = async (correct) => {
    try {
      await api("/v1/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ question, answer: answer ? answer.text : "", correct,
                               doc_id: answer ? answer.doc_id : null,
                               start: answer ? answer.start : null, end: answer ? answer.end : null }),
      });
      box.textContent = "thanks for the feedback";
    } catch (error) {
      box.textContent = `feedback not saved: ${error.message}`;
    }
  };
  const yes = el("button", { type: "button", textContent: "right", title: "this is right" });
  const no = el("button", { type: "button", textContent: "wrong", title: "this is wrong" });
  yes.addEventListener("click", () => send(true));
  no.addEventListener("click", () => send(false));
  box.append(prompt, yes, no);
  return box;
}

// The headings a citation lies under, as the CLI and chat Sources write them: ", 2. Leave > 2.2 Entitlement".
function sectionLabel(section) {
  return section && section.length ? `, ${section.join(" > ")}` : "";
}

function renderAnswer(answer, index, question) {
  const c = answer.citation;
  const notSure = answer.confidence_level === "not_sure";
  const card = el("article", { className: `answer${index === 0 ? " best" : ""}${notSure ? " not-sure" : ""}` });
  card.dataset.docId = answer.doc_id;
  card.dataset.confidenceLevel = answer.confidence_level;
  card.append(
    el("span", { className: "score", textContent: `${notSure ? "not sure · " : ""}probability ${(Math.floor(answer.score * 100 + 1e-9) / 100).toFixed(2)}` }),
  );
  if (notSure) {
    card.append(el("p", { className: "low-confidence", textContent: "Low confidence — check the source." }));
  }
  card.append(el("div", { className: "text", textContent: answer.text }));
  // A "not sure" answer shows its whole cited passage (whole sentences), so that it can be checked here; a
  // confident one the words around it.
  const shown = notSure ? c.passage : c.context;
  const cut = notSure ? "" : "…";
  card.append(el("p", { className: notSure ? "context passage-text" : "context" },
                 cut, highlighted(shown.text, c.start - shown.start, c.end - shown.start), cut));
  const page = c.page ? `, page ${c.page}` : "";
  const cite = el("p", { className: "cite" });
  cite.append(`${c.title}${c.date ? ` (${c.date})` : ""}${sectionLabel(c.section)}${page}, characters ${c.start}–${c.end} · `,
              citationLink(c, "open the document at this span"),
              feedbackButtons(question, answer, " · was this right? "));
  card.append(cite);
  return card;
}

function renderAbstention(result) {
  const box = el("article", { className: "abstain" });
  // Only what the search shows: it found nothing, which does not prove that the documents hold nothing.
  box.append(el("strong", { textContent: "I found no answer in the documents." }),
             el("p", { textContent: "citeqa only answers with text it can quote from the indexed documents; a differently worded question may find one." }));
  if (result.passages.length) {
    box.append(el("p", { textContent: "The closest passages were:" }));
    for (const p of result.passages.slice(0, 2)) {
      const item = el("div", { className: "passage" });
      item.append(el("div", { className: "context", textContent: p.text }),
                  el("p", { className: "cite" }, `${p.title}${sectionLabel(p.section)} · `, citationLink(p, "open")));
      box.append(item);
    }
    const guess = el("button", { type: "button", id: "show-best-guess", textContent: "Show the best guess anyway" });
    // This question only: the form's box stays as the user left it for the next ones.
    guess.addEventListener("click", () => ask(result.question, Number($("max-answers").value), true));
    box.append(el("p", {}, guess));
  }
  box.append(el("p", {}, feedbackButtons(result.question, null, "Was this right? ")));
  return box;
}

function closeDocument() {
  $("document").hidden = true;
}

function citesSpan(result, docId, start, end) {
  return result.answers.some((a) => a.doc_id === docId && a.start === start && a.end === end);
}

// Alternatives that round to a score of 0.00 say nothing a reader can use; the best answer always shows.
const MIN_SHOWN_SCORE = 0.005;

async function ask(question, maxAnswers, bestGuess = $("best-guess").checked) {
  const results = $("results");
  results.replaceChildren();
  closeDocument();  // a new question: the panel of the previous one goes
  setStatus("Looking it up…");
  $("ask-button").disabled = true;
  try {
    const result = await api("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question, max_answers: maxAnswers, best_guess: bestGuess }),
    });
    const shown = result.answers.filter((a, i) => i === 0 || a.score >= MIN_SHOWN_SCORE);
    if (result.no_answer) {
      results.append(renderAbstention(result));
    } else {
      shown.forEach((answer, i) => results.append(renderAnswer(answer, i, result.question)));
    }
    const outcome = result.no_answer ? "No answer found"
      : `${shown.length} answer(s)${result.confidence_level === "not_sure" ? ", not sure" : ""}`;
    setStatus(`${outcome} in ${Math.round(result.timings_ms.total)} ms`);
    return result;
  } catch (error) {
    setStatus(error.message, true);
    return null;
  } finally {
    $("ask-button").disabled = false;
  }
}

async function openDocument(docId, start, end) {
  const url = `/v1/documents/${encodeURIComponent(docId).replace(/%2F/g, "/")}?start=${start}&end=${end}`;
  try {
    const doc = await api(url);
    const span = doc.span;
    $("document-title").textContent = doc.title;
    $("document-meta").textContent = `${doc.id}${doc.date ? ` · ${doc.date}` : ""}${span.page ? ` · page ${span.page}` : ""} · characters ${span.start}–${span.end} of ${doc.length}`;
    const quote = $("document-span");
    quote.replaceChildren(span.context_start > 0 ? "…" : "", highlighted(span.before + span.text + span.after,
      span.before.length, span.before.length + span.text.length), span.context_end < doc.length ? "…" : "");
    $("document-json").href = url;
    $("document").hidden = false;
    $("document").scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (error) {
    setStatus(error.message, true);
  }
}

$("ask-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return setStatus("Type a question first.", true);
  ask(question, Number($("max-answers").value));
});

$("document-close").addEventListener("click", closeDocument);

// Deep links: #doc=<id>&start=<n>&end=<n> opens that span; ?q=<question> asks at once (?n= answers,
// ?guess=1 the best guess when no answer reaches the floor).
// With both, the span opens once the answers are in, and only if one of them cites it.
const hash = new URLSearchParams(location.hash.slice(1));
const linked = hash.get("doc") ? [hash.get("doc"), Number(hash.get("start")), Number(hash.get("end"))] : null;
const params = new URLSearchParams(location.search);
const query = params.get("q");
if ([...$("max-answers").options].some((option) => option.value === params.get("n"))) {
  $("max-answers").value = params.get("n");
}
if (params.get("guess") === "1") $("best-guess").checked = true;
if (query) {
  $("question").value = query;
  ask(query, Number($("max-answers").value)).then((result) => {
    if (linked && result && citesSpan(result, ...linked)) openDocument(...linked);
  });
} else if (linked) {
  openDocument(...linked);
}
