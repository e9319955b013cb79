// Ask: the answer streamed token by token from POST /v1/kb/chat/stream, its [n] citations as buttons
// that open the cited passage (document and page), and a rating once it is done.
import { $, documentName, h, showError } from "./dom.js";
import { ratingControl } from "./history.js";

export function setupAsk(app) {
  const form = $("#ask-form");
  const input = $("#ask-query");
  const submit = $("#ask-submit");
  const stop = $("#ask-stop");
  const errorBox = $("#ask-error");
  const answerBox = $("#answer");
  const answerText = $("#answer-text");
  const meta = $("#answer-meta");
  const rating = $("#answer-rating");
  const sourceList = $("#answer-sources");
  const sourcePanel = $("#source");
  let controller = null;
  let sources = [];
  let text = "";
  let openedBy = null; // the button that opened the passage, where focus returns on Close

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (controller) return;
    reset();
    answerBox.hidden = false;
    answerBox.dataset.state = "waiting";
    setBusy(true);
    const body = { query: input.value.trim(), filters: { kb_id: app.kbId() } };
    try {
      for await (const message of app.api.chatStream(body, controller.signal)) handle(message);
      if (controller.signal.aborted) answerBox.dataset.state = "stopped";
    } catch (error) {
      answerBox.dataset.state = "error";
      showError(errorBox, error);
      if (!text) answerBox.hidden = true;
    } finally {
      setBusy(false);
    }
  });

  stop.addEventListener("click", () => controller && controller.abort());

  /** One stream event: {"event": "sources" | "message" | "done" | "error", "data": {...}}; others are skipped. */
  function handle({ event, data }) {
    if (event === "sources") {
      sources = data.sources;
      sourceList.replaceChildren(...sources.map(sourceItem));
      $("#sources-title").hidden = sources.length === 0; // an answer the documents do not hold cites nothing
    } else if (event === "message") {
      answerBox.dataset.state = "streaming";
      text += data.content;
      renderAnswer();
    } else if (event === "done") {
      answerBox.dataset.state = "done";
      const facts = [data.model, `${(data.latency_ms / 1000).toFixed(1)} s`];
      if (typeof data.confidence === "number") facts.push(`confidence ${Math.round(data.confidence * 100)}%`);
      if (data.cached) facts.push("cached");
      meta.textContent = facts.join(" · ");
      rating.replaceChildren(ratingControl(app, data.query_id, null));
      app.emit("asked", data.query_id);
    } else if (event === "error") {
      answerBox.dataset.state = "error";
      showError(errorBox, new Error(data.message));
    }
  }

  /** The answer so far, its [n] (for a source that exists) as buttons; the rest stays plain text. */
  function renderAnswer() {
    const parts = [];
    let last = 0;
    for (const match of text.matchAll(/\[(\d+)\]/g)) {
      const number = Number(match[1]);
      if (number < 1 || number > sources.length) continue;
      const end = match.index + match[0].length;
      const punctuation = text.slice(end).match(/^[.,;:!?)]*/)[0]; // kept on the citation's line
      parts.push(text.slice(last, match.index), h("span", { class: "nowrap" }, citationButton(number), punctuation));
      last = end + punctuation.length;
    }
    parts.push(text.slice(last));
    answerText.replaceChildren(...parts.filter(Boolean));
  }

  function citationButton(number) {
    const source = sources[number - 1];
    const page = source.page ? `, page ${source.page}` : "";
    return h(
      "button",
      {
        type: "button",
        class: "cite",
        "aria-label": `Source ${number}: ${documentName(source)}${page}`,
        onclick: (event) => showSource(number, event.currentTarget),
      },
      `[${number}]`,
    );
  }

  function sourceItem(source, index) {
    return h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "link", onclick: (event) => showSource(index + 1, event.currentTarget) },
        `[${index + 1}] ${documentName(source)}${source.page ? ` — page ${source.page}` : ""}`,
      ),
    );
  }

  function showSource(number, button) {
    const source = sources[number - 1];
    openedBy = button;
    $("#source-title").textContent = `[${number}] ${documentName(source)}`;
    $("#source-meta").textContent = [
      source.page ? `Page ${source.page}` : "No page numbers in this format",
      source.section ? `Section “${source.section}”` : null,
      `score ${source.score.toFixed(3)}`,
    ]
      .filter(Boolean)
      .join(" · ");
    $("#source-text").textContent = source.text;
    sourcePanel.hidden = false;
    sourcePanel.focus();
  }

  $("#source-close").addEventListener("click", () => {
    sourcePanel.hidden = true;
    if (openedBy && openedBy.isConnected) openedBy.focus();
  });

  function setBusy(busy) {
    controller = busy ? new AbortController() : null;
    submit.disabled = busy;
    stop.hidden = !busy;
    if (!busy && (document.activeElement === stop || document.activeElement === document.body)) input.focus();
  }

  function reset() {
    text = "";
    sources = [];
    answerText.replaceChildren();
    sourceList.replaceChildren();
    $("#sources-title").hidden = true;
    meta.textContent = "";
    rating.replaceChildren();
    sourcePanel.hidden = true;
    showError(errorBox, null);
  }

  app.addEventListener("kbchange", () => {
    if (controller) controller.abort();
    reset();
    answerBox.hidden = true;
  });
  app.addEventListener("disconnect", () => {
    if (controller) controller.abort();
    reset();
    answerBox.hidden = true;
  });
}
