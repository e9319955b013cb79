// The Ragline HTTP API as the page uses it: JSON calls, uploads with progress, the streamed chat.
// Every error the server answers has the body {"error", "message", "code"}; it becomes an ApiError.

export class ApiError extends Error {
  constructor(status, body) {
    const parsed = body && typeof body === "object" ? body : {};
    super(parsed.message || (status === 0 ? "The server could not be reached." : `HTTP ${status}`));
    this.status = status;
    this.title = parsed.error || (status === 0 ? "Network error" : "Request failed");
    this.retryAfter = parsed.retry_after;
  }
}

function errorFrom(status, text) {
  try {
    return new ApiError(status, JSON.parse(text));
  } catch {
    return new ApiError(status, { error: "Request failed", message: text.slice(0, 300) || `HTTP ${status}` });
  }
}

export class Api {
  /** keyOf: a function giving the current API key (it may change while the page is open). */
  constructor(keyOf) {
    this.keyOf = keyOf;
  }

  headers(extra = {}) {
    return { "x-api-key": this.keyOf(), ...extra };
  }

  async request(method, path, body) {
    const init = { method, headers: this.headers() };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0);
    }
    const text = await response.text();
    if (!response.ok) throw errorFrom(response.status, text);
    return text ? JSON.parse(text) : null;
  }

  get(path) {
    return this.request("GET", path);
  }

  /** One file as multipart/form-data; onProgress(fraction) as its bytes go out. Resolves to the 202 body. */
  upload(file, fields, onProgress) {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      form.append("file", file, file.name);
      for (const [name, value] of Object.entries(fields)) form.append(name, value);
      const xhr = new XMLHttpRequest(); // fetch() cannot report upload progress
      xhr.open("POST", "/v1/kb/documents");
      xhr.setRequestHeader("x-api-key", this.keyOf());
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
        else reject(errorFrom(xhr.status, xhr.responseText));
      };
      xhr.onerror = () => reject(new ApiError(0));
      xhr.send(form);
    });
  }

  /** POST /v1/kb/chat/stream: yields each event {event, data} as it arrives, until the final [DONE]. */
  async *chatStream(body, signal) {
    let response;
    try {
      response = await fetch("/v1/kb/chat/stream", {
        method: "POST",
        headers: this.headers({ "content-type": "application/json", accept: "text/event-stream" }),
        body: JSON.stringify(body),
        signal,
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      throw new ApiError(0);
    }
    if (!response.ok) throw errorFrom(response.status, await response.text());
    for await (const data of sseData(response.body, signal)) {
      if (data === "[DONE]") return;
      yield JSON.parse(data);
    }
  }
}

/** The `data` of each Server-Sent Event in a byte stream (several data lines of one event are joined). */
export async function* sseData(stream, signal) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    while (true) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (signal && signal.aborted) return; // the user pressed Stop
        throw error;
      }
      if (chunk.done) break;
      buffer += chunk.value;
      // Events end with a blank line; the last piece may be an event still arriving.
      const events = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = events.pop();
      for (const event of events) {
        const data = dataOf(event);
        if (data !== null) yield data;
      }
    }
    const last = dataOf(buffer);
    if (last !== null) yield last;
  } finally {
    // Stops the download when the reader leaves early; a stream already finished or aborted has nothing to stop.
    reader.cancel().catch(() => {});
  }
}

function dataOf(event) {
  const lines = event.split(/\r\n|\n|\r/).filter((line) => line.startsWith("data:"));
  if (!lines.length) return null; // a comment or a keep-alive
  return lines.map((line) => line.slice(5).replace(/^ /, "")).join("\n");
}
