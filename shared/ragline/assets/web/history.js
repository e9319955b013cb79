// History: the tenant's answered questions, newest first, each rated from 1 to 5.
import { $, formatTime, h, showError } from "./dom.js";

const SHOWN = 20;

export function setupHistory(app) {
  const list = $("#history-list");
  const empty = $("#history-empty");
  const errorBox = $("#history-error");

  async function refresh() {
    list.setAttribute("aria-busy", "true"); // assistive tech (and the tests) wait for the new list
    try {
      const params = new URLSearchParams({ limit: String(SHOWN), include_answer: "true" });
      const page = await app.api.get(`/v1/queries/history?${params}`);
      list.replaceChildren(...page.queries.map((query) => historyItem(app, query)));
      empty.hidden = page.queries.length > 0;
      showError(errorBox, null);
    } catch (error) {
      showError(errorBox, error);
    } finally {
      list.setAttribute("aria-busy", "false");
    }
  }

  $("#history-refresh").addEventListener("click", refresh);
  app.addEventListener("connect", refresh);
  app.addEventListener("asked", refresh);
  app.addEventListener("disconnect", () => {
    list.replaceChildren();
    showError(errorBox, null);
  });
}

function historyItem(app, query) {
  const facts = [formatTime(query.timestamp), `confidence ${Math.round(query.confidence * 100)}%`];
  return h(
    "li",
    { class: "history-item", "data-query-id": query.query_id },
    h("p", { class: "question" }, query.question),
    h("p", { class: "meta" }, facts.join(" · ")),
    query.answer ? h("details", {}, h("summary", {}, "Answer"), h("p", { class: "passage" }, query.answer)) : null,
    ratingControl(app, query.query_id, query.rating),
  );
}

/** Five buttons rating an answer (PATCH /v1/queries/{id}/rating); the current rating is pressed. */
export function ratingControl(app, queryId, current) {
  const status = h("span", { class: "rating-status", role: "status" });
  const buttons = [1, 2, 3, 4, 5].map((value) =>
    h("button", { type: "button", class: "star", "aria-label": `Rate ${value} of 5`, onclick: () => rate(value) }, "★"),
  );
  const group = h(
    "div",
    { class: "rating", role: "group", "aria-label": "Rate this answer", "data-query-id": queryId },
    h("span", { class: "rating-label" }, "Rate"),
    buttons,
    status,
  );

  function show(rating) {
    buttons.forEach((button, index) => {
      button.classList.toggle("on", rating !== null && index < rating);
      button.setAttribute("aria-pressed", String(index + 1 === rating));
    });
    group.dataset.rating = rating === null ? "" : String(rating);
  }

  async function rate(value) {
    try {
      await app.api.request("PATCH", `/v1/queries/${encodeURIComponent(queryId)}/rating`, { rating: value });
      // The same answer may be shown twice (under the answer and in the history): both show the rating.
      for (const other of document.querySelectorAll(`.rating[data-query-id="${CSS.escape(queryId)}"]`)) {
        other.showRating(value);
      }
      status.replaceChildren(`Rated ${value}/5`);
      status.classList.remove("error");
    } catch (error) {
      status.classList.add("error");
      showError(status, error);
    }
  }

  group.showRating = show;
  show(current ?? null);
  return group;
}
