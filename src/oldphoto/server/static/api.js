// REST calls of SPEC "REST": the anonymous session, jobs, and errors as `ApiError`s.
// The server sets an HttpOnly session cookie; the token is kept in memory too and sent as a Bearer header, so a
// call still carries the session where the cookie is not sent. A 401 means the session expired: get a new one
// and try the call once more. The cookie cannot be read from here, so when the session ends is kept beside it
// (`hasSession`): a first visit starts one before its first call, instead of being refused first.

const SESSION_UNTIL_KEY = "oldphoto.sessionUntil";
// A session this close to its end is renewed before use rather than refused in the middle of a call.
const SESSION_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(message, { status = 0, code = "unknown", retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter; // seconds, from Retry-After on 429/503
  }
}

export class Api {
  constructor(lang) {
    this.lang = lang;
    this.token = null;
    this.pendingSession = null;
  }

  setLanguage(lang) {
    this.lang = lang;
  }

  /** Starts (or renews) the anonymous session; concurrent callers share one request. */
  startSession() {
    this.pendingSession ??= this.#fetchJson("POST", "/api/session", { retryOn401: false })
      .then((body) => {
        this.token = body?.token ?? null;
        if (Number.isFinite(body?.expires_in)) writeLocal(SESSION_UNTIL_KEY, String(Date.now() + body.expires_in * 1000));
      })
      .finally(() => {
        this.pendingSession = null;
      });
    return this.pendingSession;
  }

  /** Whether this browser holds a session that has not ended (as far as the page knows: it was started here). */
  hasSession() {
    return Number(readLocal(SESSION_UNTIL_KEY)) > Date.now() + SESSION_MARGIN_MS;
  }

  /** Any authenticated call checks the session, as a 401 starts a new one: this is the cheapest. */
  async ensureSession() {
    await this.listJobs();
  }

  listJobs() {
    return this.#fetchJson("GET", "/api/jobs").then((body) => (Array.isArray(body) ? body : (body?.jobs ?? [])));
  }

  getJob(jobId) {
    return this.#fetchJson("GET", `/api/jobs/${encodeURIComponent(jobId)}`);
  }

  cancelJob(jobId) {
    return this.#fetchJson("DELETE", `/api/jobs/${encodeURIComponent(jobId)}`);
  }

  /**
   * Uploads a photo: resolves to the 202 body. XMLHttpRequest rather than fetch because only it reports upload
   * progress, and a large scan on a slow line must not look stuck. Returns {promise, abort}.
   */
  createJob(file, steps, onUploadProgress) {
    let xhr = null;
    let aborted = false;
    const send = () =>
      new Promise((resolve, reject) => {
        xhr = new XMLHttpRequest();
        xhr.open("POST", "/api/jobs");
        xhr.withCredentials = true;
        for (const [name, value] of Object.entries(this.#headers())) xhr.setRequestHeader(name, value);
        xhr.upload.onprogress = (e) => {
          if (e.lengthComputable) onUploadProgress(Math.round((100 * e.loaded) / e.total));
        };
        xhr.onload = () => resolve(xhr);
        xhr.onerror = () => reject(networkError());
        xhr.onabort = () => reject(new ApiError("aborted", { code: "aborted" }));
        const form = new FormData();
        form.append("file", file, file.name || "photo");
        form.append("steps", steps.join(","));
        xhr.send(form);
      });

    const promise = (async () => {
      let answer = await send();
      if (answer.status === 401) {
        await this.startSession();
        if (aborted) throw new ApiError("aborted", { code: "aborted" });
        answer = await send();
      }
      const body = parseJson(answer.responseText);
      if (answer.status >= 200 && answer.status < 300) return body;
      throw errorFrom(answer.status, body, answer.getResponseHeader("Retry-After"));
    })();
    return {
      promise,
      abort: () => {
        aborted = true;
        xhr?.abort();
      },
    };
  }

  #headers() {
    const headers = { Accept: "application/json", "Accept-Language": this.lang };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    return headers;
  }

  async #fetchJson(method, path, { retryOn401 = true } = {}) {
    let response;
    try {
      response = await fetch(path, { method, credentials: "same-origin", headers: this.#headers() });
    } catch {
      throw networkError();
    }
    if (response.status === 401 && retryOn401) {
      await this.startSession();
      return this.#fetchJson(method, path, { retryOn401: false });
    }
    const body = parseJson(await response.text());
    if (!response.ok) throw errorFrom(response.status, body, response.headers.get("Retry-After"));
    return body;
  }
}

// Storage may be disabled: then every first call of a page may meet a 401 and start the session then.
function readLocal(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writeLocal(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* not remembered */
  }
}

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function errorFrom(status, body, retryAfterHeader) {
  const retryAfter = Number.parseInt(retryAfterHeader ?? "", 10);
  // FastAPI's own validation errors say {"detail": ...}; SPEC's say {"error", "code"}: accept both.
  const message = body?.error ?? (typeof body?.detail === "string" ? body.detail : "");
  return new ApiError(message, {
    status,
    code: body?.code ?? `http_${status}`,
    retryAfter: Number.isFinite(retryAfter) ? retryAfter : null,
  });
}

function networkError() {
  return new ApiError("", { code: "network" });
}
