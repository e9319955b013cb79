// Building the page from data without ever parsing it as HTML: server text only ever becomes text nodes.

/** An element: h("li", {class: "doc", onclick: fn}, "text", child, [more children]). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && typeof value !== "string") el[name] = value; // e.g. value, max, disabled
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Shows an error (an ApiError or any other) in a message element; null clears it. */
export function showError(el, error) {
  el.replaceChildren();
  el.hidden = !error;
  if (!error) return;
  if (error.status) {
    el.append(h("strong", {}, `${error.title} (${error.status})`), ": ", error.message);
  } else {
    el.append(error.message || String(error));
  }
}

export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

export function formatTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

/** "Title (file.pdf)", or whichever of the two a document or passage has. */
export function documentName(item) {
  const title = item.title || "";
  const filename = item.filename || "";
  if (title && filename && title !== filename) return `${title} (${filename})`;
  return title || filename || item.document_id || item.id || "untitled";
}
