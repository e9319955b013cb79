// The page's entry point: the API key, the knowledge-base picker, and the four panels wired to them.
import { Api } from "./api.js";
import { setupAsk } from "./ask.js";
import { $, h, showError } from "./dom.js";
import { setupDocuments } from "./documents.js";
import { setupHistory } from "./history.js";
import { setupSearch } from "./search.js";

const KEY_STORAGE = "ragline.apiKey";
const KB_STORAGE = "ragline.kbId";

// The panels listen to the app: "connect" and "disconnect" (the key), "kbchange", "asked" (an answer finished).
const app = new EventTarget();
app.api = new Api(() => localStorage.getItem(KEY_STORAGE) || "");
app.kbId = () => localStorage.getItem(KB_STORAGE) || "default";
app.emit = (name, detail) => app.dispatchEvent(new CustomEvent(name, { detail }));

setupDocuments(app);
setupSearch(app);
setupAsk(app);
setupHistory(app);

const keyForm = $("#key-form");
const keyInput = $("#key-input");
const keyError = $("#key-error");
const kbSelect = $("#kb-select");
const kbError = $("#kb-error");

keyForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  localStorage.setItem(KEY_STORAGE, keyInput.value.trim());
  showError(keyError, null);
  await connect();
});

$("#forget-key").addEventListener("click", () => {
  localStorage.removeItem(KEY_STORAGE);
  disconnect();
});

/** Checks the stored key by listing its knowledge bases, then opens the workspace. */
async function connect() {
  let knowledgeBases;
  try {
    knowledgeBases = (await app.api.get("/v1/knowledge-bases")).knowledge_bases;
  } catch (error) {
    if (error.status === 401) {
      localStorage.removeItem(KEY_STORAGE);
      disconnect();
      showError(keyError, error);
      return;
    }
    // A key without the search or ingest scope cannot list them: it still works on the default one.
    knowledgeBases = [{ id: "default", name: "default" }];
    showError(kbError, error);
  }
  const key = localStorage.getItem(KEY_STORAGE);
  $("#key-label").textContent = `${key.slice(0, 7)}…`;
  keyInput.value = "";
  $("#connect").hidden = true;
  $("#key-status").hidden = false;
  $("#workspace").hidden = false;
  fillKnowledgeBases(knowledgeBases);
  app.emit("connect");
}

function disconnect() {
  app.emit("disconnect");
  $("#workspace").hidden = true;
  $("#key-status").hidden = true;
  $("#connect").hidden = false;
  keyInput.focus();
}

function fillKnowledgeBases(knowledgeBases, selected = app.kbId()) {
  if (!knowledgeBases.some((kb) => kb.id === selected)) selected = "default";
  localStorage.setItem(KB_STORAGE, selected);
  kbSelect.replaceChildren(
    ...knowledgeBases.map((kb) =>
      h("option", { value: kb.id, selected: kb.id === selected }, kb.name), // names are unique per tenant
    ),
  );
}

kbSelect.addEventListener("change", () => {
  localStorage.setItem(KB_STORAGE, kbSelect.value);
  app.emit("kbchange");
});

$("#kb-form").addEventListener("submit", (event) => event.preventDefault());

$("#kb-create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const nameInput = $("#kb-name");
  showError(kbError, null);
  try {
    const created = await app.api.request("POST", "/v1/knowledge-bases", { name: nameInput.value.trim() });
    const { knowledge_bases: all } = await app.api.get("/v1/knowledge-bases");
    fillKnowledgeBases(all, created.id);
    nameInput.value = "";
    event.target.closest("details").open = false;
    app.emit("kbchange");
    kbSelect.focus();
  } catch (error) {
    showError(kbError, error);
  }
});

if (localStorage.getItem(KEY_STORAGE)) connect();
else keyInput.focus();
