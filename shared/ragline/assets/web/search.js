// Search: a query with its mode, result count and filters (the API's filter language, as JSON),
// scoped to the chosen knowledge base.
import { $, documentName, h, showError } from "./dom.js";

const LONG_PASSAGE = 360; // characters: longer passages are folded until asked for

export function setupSearch(app) {
  const form = $("#search-form");
  const results = $("#search-results");
  const summary = $("#search-summary");
  const errorBox = $("#search-error");

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errorBox, null);
    let filters;
    try {
      filters = parseFilters($("#search-filters").value);
    } catch (error) {
      showError(errorBox, error);
      return;
    }
    const body = {
      query: $("#search-query").value.trim(),
      mode: $("#search-mode").value,
      limit: Number($("#search-limit").value) || 5,
      filters: { kb_id: app.kbId(), ...filters },
    };
    summary.textContent = "Searching…";
    try {
      const answer = await app.api.request("POST", "/v1/kb/search", body);
      results.replaceChildren(...answer.items.map(resultItem));
      summary.textContent =
        `${answer.items.length} of ${answer.total_found} result${answer.total_found === 1 ? "" : "s"} ` +
        `(${body.mode}, ${Math.round(answer.latency_ms)} ms)`;
    } catch (error) {
      summary.textContent = "";
      results.replaceChildren();
      showError(errorBox, error);
    }
  });

  const clear = () => {
    results.replaceChildren();
    summary.textContent = "";
    showError(errorBox, null);
  };
  app.addEventListener("kbchange", clear);
  app.addEventListener("disconnect", clear);
}

function parseFilters(text) {
  if (!text.trim()) return {};
  let filters;
  try {
    filters = JSON.parse(text);
  } catch {
    throw new Error('Filters must be a JSON object, e.g. {"metadata.team": "eng"}.');
  }
  if (!filters || typeof filters !== "object" || Array.isArray(filters)) {
    throw new Error('Filters must be a JSON object, e.g. {"metadata.team": "eng"}.');
  }
  return filters;
}

function resultItem(hit) {
  const passage = hit.payload;
  const where = [passage.page ? `page ${passage.page}` : null, passage.section || null].filter(Boolean);
  const text = h("p", { class: "passage" }, passage.text || "");
  const item = h(
    "li",
    { class: "result" },
    h(
      "div",
      { class: "doc-head" },
      h("span", { class: "doc-name" }, documentName(passage)),
      h("span", { class: "score", title: "Relevance score" }, hit.score.toFixed(3)),
    ),
    where.length ? h("p", { class: "meta" }, where.join(" · ")) : null,
    text,
  );
  if ((passage.text || "").length > LONG_PASSAGE) {
    text.classList.add("folded");
    const toggle = h("button", { type: "button", class: "link", "aria-expanded": "false" }, "Show all");
    toggle.addEventListener("click", () => {
      const folded = text.classList.toggle("folded");
      toggle.textContent = folded ? "Show all" : "Show less";
      toggle.setAttribute("aria-expanded", String(!folded));
    });
    item.append(toggle);
  }
  return item;
}
