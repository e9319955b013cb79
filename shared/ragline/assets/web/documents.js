// Documents: uploads (picker or drag and drop, one request per file with its progress) and the
// knowledge base's document list, polled so statuses move from queued to indexed (or failed) live.
import { $, documentName, formatBytes, formatTime, h, showError } from "./dom.js";

const BUSY_POLL_MS = 1500; // while something is being uploaded or indexed
const IDLE_POLL_MS = 15000; // otherwise: files dropped in the inbox or uploaded elsewhere still show up
const PENDING = new Set(["queued", "processing", "deleting"]);

export function setupDocuments(app) {
  const list = $("#document-list");
  const empty = $("#documents-empty");
  const errorBox = $("#documents-error");
  const uploads = $("#uploads");
  const fileInput = $("#file-input");
  const dropzone = $("#dropzone");
  let connected = false;
  let documents = [];
  let uploading = 0;
  let timer = null;
  let generation = 0; // answers for a previous key or knowledge base are dropped

  async function refresh() {
    clearTimeout(timer);
    if (!connected) return;
    const asked = ++generation;
    try {
      const params = new URLSearchParams({ kb_id: app.kbId(), limit: "100" });
      const page = await app.api.get(`/v1/kb/documents?${params}`);
      if (asked !== generation) return;
      documents = page.documents;
      render(page.next_cursor);
      showError(errorBox, null);
    } catch (error) {
      if (asked !== generation) return;
      showError(errorBox, error);
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!connected || document.hidden) return;
    const busy = uploading > 0 || documents.some((d) => PENDING.has(d.status));
    timer = setTimeout(refresh, busy ? BUSY_POLL_MS : IDLE_POLL_MS);
  }

  function render(nextCursor) {
    list.replaceChildren(...documents.map(documentItem));
    if (nextCursor) list.append(h("li", { class: "meta" }, "Showing the newest 100 documents."));
    empty.hidden = documents.length > 0;
  }

  function documentItem(doc) {
    const facts = [
      doc.page_count ? `${doc.page_count} page${doc.page_count === 1 ? "" : "s"}` : null,
      doc.status === "indexed" ? `${doc.chunk_count} chunk${doc.chunk_count === 1 ? "" : "s"}` : null,
      formatBytes(doc.size_bytes),
      formatTime(doc.created_at),
    ].filter(Boolean);
    return h(
      "li",
      { class: "doc", "data-document-id": doc.id, "data-status": doc.status },
      h(
        "div",
        { class: "doc-head" },
        h("span", { class: "doc-name" }, documentName(doc)),
        h("span", { class: `badge status-${doc.status}` }, doc.status),
      ),
      doc.error ? h("p", { class: "doc-error" }, doc.error) : null,
      h(
        "div",
        { class: "doc-foot" },
        h("p", { class: "meta" }, facts.join(" · ")),
        doc.status === "deleting"
          ? null
          : h(
              "button",
              {
                type: "button",
                class: "link danger small",
                "aria-label": `Delete ${documentName(doc)}`,
                onclick: () => remove(doc),
              },
              "Delete",
            ),
      ),
    );
  }

  async function remove(doc) {
    if (!confirm(`Delete “${documentName(doc)}” and everything indexed from it?`)) return;
    try {
      await app.api.request("DELETE", `/v1/kb/documents/${encodeURIComponent(doc.id)}`);
      showError(errorBox, null);
    } catch (error) {
      showError(errorBox, error);
    }
    refresh();
  }

  async function uploadAll(files) {
    const items = [...files].map((file) => ({ file, ...uploadItem(file) }));
    uploads.append(...items.map((item) => item.el));
    uploading += items.length;
    const kbId = app.kbId();
    // One at a time: each file has its own progress, and the server's per-tenant upload slots stay free.
    for (const item of items) {
      item.status.textContent = "Uploading…";
      try {
        const answer = await app.api.upload(item.file, { kb_id: kbId }, (fraction) => {
          item.progress.value = fraction;
          item.status.textContent = `Uploading… ${Math.round(fraction * 100)}%`;
        });
        item.progress.value = 1;
        item.el.classList.add("done");
        item.status.textContent = answer.data.duplicate ? "Already uploaded" : "Uploaded";
        setTimeout(() => item.el.remove(), 4000);
      } catch (error) {
        item.el.classList.add("failed");
        showError(item.status, error);
        item.el.append(
          h("button", { type: "button", class: "link", onclick: () => item.el.remove() }, "Dismiss"),
        );
      }
      uploading -= 1;
      refresh();
    }
  }

  function uploadItem(file) {
    const progress = h("progress", { max: 1, value: 0, "aria-label": `Upload of ${file.name}` });
    const status = h("span", { class: "upload-status", role: "status" }, "Waiting");
    const el = h(
      "li",
      { class: "upload" },
      h("span", { class: "doc-name" }, file.name),
      h("span", { class: "meta" }, formatBytes(file.size)),
      progress,
      status,
    );
    return { el, progress, status };
  }

  fileInput.addEventListener("change", () => {
    uploadAll(fileInput.files);
    fileInput.value = ""; // choosing the same file again still uploads it
  });
  for (const name of ["dragenter", "dragover"]) {
    dropzone.addEventListener(name, (event) => {
      event.preventDefault();
      dropzone.classList.add("over");
    });
  }
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("over");
    if (event.dataTransfer.files.length) uploadAll(event.dataTransfer.files);
  });

  $("#documents-refresh").addEventListener("click", refresh);
  document.addEventListener("visibilitychange", () => (document.hidden ? clearTimeout(timer) : refresh()));
  app.addEventListener("connect", () => {
    connected = true;
    refresh();
  });
  app.addEventListener("kbchange", () => {
    list.replaceChildren();
    refresh();
  });
  app.addEventListener("disconnect", () => {
    connected = false;
    generation += 1;
    clearTimeout(timer);
    documents = [];
    list.replaceChildren();
    uploads.replaceChildren();
    showError(errorBox, null);
  });
}
