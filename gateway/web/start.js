// The start page: a link or a file to transcribe, and "Your transcripts", the jobs this browser
// started or opened.

import { forget, remember, remembered } from "./history.js";
import { clock } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);

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
  if (file) {
    body = new FormData();
    body.append("file", file);
  } else {
    body = JSON.stringify({ url });
    headers["Content-Type"] = "application/json";
  }
  setState("submitting");
  $("#submit").disabled = true;
  $("#submit").textContent = file ? "Uploading…" : "Starting…";
  try {
    const response = await fetch("/v1/jobs", { method: "POST", body, headers });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      error.textContent = answer.error?.message || `The server refused the job (HTTP ${response.status}).`;
      setState("idle");
      return;
    }
    remember({ id: answer.job_id, token: answer.token, title: file ? file.name : url, status: "queued" });
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

/** "Your transcripts": this browser's jobs, newest first. */
export function showHistory() {
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
