// The start page: a link or a file to transcribe, and "Your transcripts": the jobs this browser
// started or opened or, signed in with an API key (SCRIBE_AUTH=keys), the account's own jobs.

import { showAccount } from "./account.js";
import { account, apiFetch, keyRefused, refresh } from "./auth.js";
import { forget, remember, remembered } from "./history.js";
import { clock } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
const LOCAL_NOTE = "Kept in this browser only. Removing one takes it off this list; the link still works.";
const ACCOUNT_NOTE = "Every transcript of your account, newest first.";
const ADMIN_NOTE = "Every transcript on this server (your key is an admin's), newest first.";
const PAGE = 20; // jobs per page of the account's list
const STATUS_WORDS = {
  queued: "waiting", running: "transcribing", done: "done", failed: "failed", cancelled: "cancelled",
};
let listing = 0; // the latest request for the account's list: an older answer arriving late is dropped
let nextCursor = null;

function setState(state) {
  document.body.dataset.state = state;
}

async function submit(event, onJob) {
  event.preventDefault();
  const error = $("#form-error");
  error.textContent = "";
  const file = $("#file").files[0];
  const url = $("#url").value.trim();
  if (!file && !url) {
    error.textContent = "Paste a link or choose a file first.";
    return;
  }
  let body;
  const headers = { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : String(Math.random()) };
  const fresh = $("#fresh").checked; // otherwise an input transcribed before is replayed at once, billed nothing
  if (file) {
    body = new FormData();
    body.append("file", file);
    if (fresh) body.append("fresh", "true");
  } else {
    body = JSON.stringify(fresh ? { url, fresh } : { url });
    headers["Content-Type"] = "application/json";
  }
  setState("submitting");
  $("#submit").disabled = true;
  $("#submit").textContent = file ? "Uploading…" : "Starting…";
  try {
    const sentKey = Boolean(account.key);
    const response = await apiFetch("/v1/jobs", { method: "POST", body, headers });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401 && account.mode !== "none") {
      // The key was revoked meanwhile, or this server asks for one: sign in (again).
      keyRefused();
      showStart(sentKey ? answer.error?.message : "Sign in with your API key to start a transcript.");
      setState("idle");
      return;
    }
    if (!response.ok) {
      // Over a quota (403) or too many requests (429): the server's sentence says which, and until when.
      error.textContent = answer.error?.message || `The server refused the job (HTTP ${response.status}).`;
      setState("idle");
      if (account.key) refresh().then(() => showAccount());
      return;
    }
    remember({ id: answer.job_id, token: answer.token, title: file ? file.name : url, status: "queued" });
    if (account.key) refresh().then(() => showAccount()); // the counts, for when the start page shows again
    history.pushState(null, "", answer.links.page);
    onJob(answer.job_id, answer.token);
  } catch {
    error.textContent = "The server could not be reached. Check that it is running, then try again.";
    setState("idle");
  } finally {
    $("#submit").disabled = false;
    $("#submit").textContent = "Transcribe";
  }
}

function chooseFile(file) {
  $("#file-name").textContent = file ? `${file.name} (${(file.size / 1e6).toFixed(1)} MB)` : "";
  if (file) $("#url").value = "";
}

/** The form's handlers; `onJob(id, token)` once the server has taken the job. */
export function wireStart(onJob) {
  $("#start").addEventListener("submit", (event) => submit(event, onJob));
  $("#file").addEventListener("change", () => chooseFile($("#file").files[0]));
  $("#history-more").addEventListener("click", () => {
    if (nextCursor) listAccountJobs(nextCursor);
  });
  const drop = $("#drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) drop.addEventListener(name, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (!event.dataTransfer.files.length) return;
    $("#file").files = event.dataTransfer.files;
    chooseFile(event.dataTransfer.files[0]);
  });
}

/**
 * The start page as the account stands: under keys, the sign-in form until signed in (with `message`,
 * the server's sentence, if any), then the form and the account's transcripts; without accounts, the
 * form and this browser's transcripts.
 */
export function showStart(message = "") {
  showAccount(message);
  $("#start").hidden = account.mode === "keys" && !account.key;
  $("#live-start").hidden = $("#start").hidden;
  const signedIn = account.key ? "signed-in" : "signed-out";
  document.body.dataset.auth = account.mode === "keys" ? signedIn : account.mode || "unknown";
  showHistory();
}

/** "Your transcripts": the account's jobs (signed in), or this browser's, newest first. */
export function showHistory() {
  if (account.mode === "keys") {
    listing += 1;
    $("#history").hidden = true;
    $("#history-list").replaceChildren();
    $("#history-more").hidden = true;
    if (account.key) listAccountJobs(null);
    return;
  }
  $("#history .history-note").textContent = LOCAL_NOTE;
  const jobs = remembered();
  $("#history").hidden = !jobs.length;
  $("#history-list").replaceChildren(...jobs.map((job) => {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/jobs/${encodeURIComponent(job.id)}?token=${encodeURIComponent(job.token)}`;
    link.textContent = job.title || `Transcript ${job.id.slice(0, 8)}`;
    const about = document.createElement("span");
    about.className = "history-meta";
    const date = new Date(job.created);
    about.textContent = [
      job.duration ? clock(job.duration) : null,
      Number.isNaN(date.getTime()) ? null : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }),
      job.status === "failed" || job.status === "cancelled" ? job.status : null,
    ].filter(Boolean).join(" · ");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "history-remove";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${link.textContent} from this list`);
    remove.addEventListener("click", () => {
      forget(job.id);
      showHistory();
      $("#history-list a")?.focus();
    });
    item.append(link, about, remove);
    return item;
  }));
}

// One page of GET /v1/jobs: the first replaces the list, the next ones ("Show more") add to it.
async function listAccountJobs(cursor) {
  const asked = cursor ? listing : ++listing;
  const note = $("#history .history-note");
  const query = `limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
  let response;
  let answer = null;
  try {
    response = await apiFetch(`/v1/jobs?${query}`);
    answer = await response.json().catch(() => null);
  } catch {
    response = null;
  }
  if (asked !== listing || !account.key) return;
  if (response?.status === 401) {
    keyRefused();
    showStart(answer?.error?.message);
    return;
  }
  if (!response?.ok || !Array.isArray(answer?.jobs)) {
    note.textContent = "Your transcripts could not be listed just now. Reload the page to try again.";
    $("#history").hidden = false;
    return;
  }
  // Each job opens with its token (the list gives it to its owner; this browser also kept the ones it
  // started): with it, the page has the job's audio and its share link.
  const tokens = new Map(remembered().map((job) => [job.id, job.token]));
  const items = answer.jobs.map((job) => accountJob(job, tokens.get(job.job_id) || job.token));
  if (cursor) $("#history-list").append(...items);
  else $("#history-list").replaceChildren(...items);
  nextCursor = answer.next_cursor || null;
  $("#history-more").hidden = !nextCursor;
  note.textContent = account.me?.admin ? ADMIN_NOTE : ACCOUNT_NOTE;
  $("#history").hidden = !$("#history-list").children.length;
}

function accountJob(job, token) {
  const item = document.createElement("li");
  item.dataset.job = job.job_id;
  const link = document.createElement("a");
  const page = `/jobs/${encodeURIComponent(job.job_id)}`;
  link.href = token ? `${page}?token=${encodeURIComponent(token)}` : page; // without one, the key opens it
  const date = new Date(job.created_at);
  const when = Number.isNaN(date.getTime())
    ? null : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  link.textContent = job.title || (when ? `Transcript of ${when}` : `Transcript ${job.job_id.slice(0, 8)}`);
  const about = document.createElement("span");
  about.className = "history-meta";
  about.textContent = [
    job.duration ? clock(job.duration) : null,
    job.title ? when : null,
    STATUS_WORDS[job.status] || job.status,
  ].filter(Boolean).join(" · ");
  item.append(link, about);
  return item;
}
