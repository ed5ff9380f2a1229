// The viewer: start a job, read its lines as they come with readings over each character, and
// listen along. Everything comes from the gateway's API (see the README); nothing else is fetched.

import { READINGS, lineReading, renderLine } from "./ruby.js";
import { JobStream } from "./stream.js";

const $ = (selector) => document.querySelector(selector);
const STATUS_WORDS = {
  queued: "Waiting for a free worker…",
  running: "Transcribing…",
  done: "Done.",
  failed: "This transcript could not be finished.",
  cancelled: "This job was cancelled.",
};

const view = {
  job: null, // {id, token}
  lines: new Map(), // seq -> {line, element}
  order: [], // seqs in order
  reading: READINGS.includes(localStorage.getItem("scribe.reading")) ? localStorage.getItem("scribe.reading") : "jyutping",
  tones: localStorage.getItem("scribe.tones") === "1",
  status: null, // the job's status as the stream last told it
  progress: { seconds_decoded: 0, duration: null },
  first: null, // [wall seconds, seconds transcribed] when this page started watching
  lastDone: null,
  eta: null, // {at, left}: the last estimate of the seconds left, counted down between lines
  current: null, // seq of the line being played
  stopAt: null, // "repeat line" pauses at the line's end
  pending: null, // seq of a line asked for before the audio was loaded
  audioTries: 0,
  audioRetry: null,
  stream: null,
};

const audioReady = () => $("#audio").readyState >= HTMLMediaElement.HAVE_METADATA;

// --- start a job ----------------------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;
}

async function submit(event) {
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
    history.pushState(null, "", answer.links.page);
    openJob(answer.job_id, answer.token);
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

function wireStart() {
  $("#start").addEventListener("submit", submit);
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

// --- a job ------------------------------------------------------------------------------------------

function openJob(id, token) {
  setInterval(() => { if (document.body.dataset.state === "running" && view.status) showStatus(); }, 1000);
  view.job = { id, token };
  $("#start-view").hidden = true;
  $("#job-view").hidden = false;
  setState("running");
  const query = `token=${encodeURIComponent(token)}`;
  for (const link of document.querySelectorAll("a.download")) {
    const format = link.dataset.format;
    link.href = `/v1/jobs/${id}/transcript?format=${format}&${query}`;
    link.setAttribute("download", `transcript-${id.slice(0, 8)}.${format}`);
  }
  $("#share").value = `${location.origin}/jobs/${id}?${query}`;
  view.stream = new JobStream(id, token, onEnvelope, onConnection);
  view.stream.open();
}

function onConnection(state, delay) {
  if (state === "reconnecting") {
    $("#status").textContent = `Connection lost; reconnecting${delay ? ` in ${Math.round(delay / 1000)} s` : ""}…`;
  } else if (state === "live" && document.body.dataset.state === "running") {
    showStatus();
  }
}

function onEnvelope(envelope) {
  switch (envelope.type) {
    case "snapshot":
      setProgress(envelope.progress);
      setWarnings(envelope.warnings);
      addLines(envelope.segments);
      view.status = envelope.status; // a finished job's terminal event follows at once
      if (envelope.status === "queued" || envelope.status === "running") setState("running");
      showStatus();
      if (envelope.status === "done" || envelope.progress?.seconds_decoded >= (envelope.progress?.duration ?? Infinity)) {
        loadAudio();
      }
      break;
    case "progress":
      setProgress(envelope);
      if (envelope.input_ended) loadAudio();
      break;
    case "heartbeat":
      setProgress(envelope.progress);
      break;
    case "segments":
      addLines(envelope.segments);
      view.status = "running";
      showStatus();
      break;
    case "final":
      setWarnings(envelope.warnings);
      view.status = "done";
      setState("done");
      showStatus();
      loadAudio();
      break;
    case "failed":
    case "cancelled":
      view.status = envelope.type;
      setState(envelope.type);
      showError(envelope.reason);
      showStatus();
      break;
    case "error":
      if (envelope.retryable) { // the server is busy or briefly down: the stream reconnects by itself
        $("#status").textContent = envelope.message;
        break;
      }
      setState("failed");
      showError(envelope.message);
      $("#status").textContent = "This transcript cannot be shown.";
      break;
    default: // "lagged": the stream reconnects by itself
  }
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "Something went wrong.";
  box.hidden = false;
}

function setWarnings(warnings) {
  const list = $("#warnings");
  list.replaceChildren(...(warnings || []).map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
}

// --- progress and the estimate of the time left -------------------------------------------------------

function setProgress(progress) {
  if (!progress) return;
  view.progress = { seconds_decoded: progress.seconds_decoded ?? 0, duration: progress.duration ?? null };
  showStatus();
}

function transcribedSeconds() {
  const last = view.order.length ? view.lines.get(view.order[view.order.length - 1]).line : null;
  return last ? last.end : 0;
}

function showStatus() {
  const { seconds_decoded: decoded, duration } = view.progress;
  const done = transcribedSeconds();
  const bar = $("#progress");
  const status = view.status || "running";
  if (status !== "running" && status !== "queued") {
    bar.max = 1;
    bar.value = 1;
    const count = view.order.length;
    const lines = count ? ` ${count} line${count === 1 ? "" : "s"}${duration ? `, ${clock(duration)} of audio` : ""}.` : "";
    $("#status").textContent = `${STATUS_WORDS[status]}${lines}`;
    $("#eta").textContent = "";
    return;
  }
  if (duration) {
    bar.max = duration;
    bar.value = Math.min(duration, done);
  } else {
    bar.removeAttribute("value"); // an indeterminate bar: the length is not known yet
  }
  const heard = decoded ? ` (audio read: ${clock(decoded)})` : "";
  $("#status").textContent = status === "queued" && !done
    ? STATUS_WORDS.queued
    : `Transcribed ${clock(done)}${duration ? ` of ${clock(duration)}` : ""}${heard}.`;
  $("#eta").textContent = estimate(done, duration);
}

// Lines come in bursts (one per chunk, several chunks at once), so the pace is measured from the
// moment this page started watching, re-estimated only when new lines arrive, once a sixth of
// the audio has come in since then, and counted down in between.
function estimate(done, duration) {
  const now = performance.now() / 1000;
  view.first ??= [now, done];
  if (done !== view.lastDone) {
    view.lastDone = done;
    const [t0, d0] = view.first;
    const rate = (done - d0) / (now - t0);
    if (duration && rate > 0 && done - d0 >= duration / 6) view.eta = { at: now, left: (duration - done) / rate };
  }
  if (!duration) return "";
  if (!view.eta) return "Estimating the time left…";
  const left = view.eta.left - (now - view.eta.at);
  if (left < 10) return "Almost there.";
  return `About ${left < 90 ? `${Math.round(left / 5) * 5} s` : `${Math.round(left / 60)} min`} left.`;
}

function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

// --- lines ------------------------------------------------------------------------------------------

function addLines(segments) {
  const fresh = [];
  for (const line of segments || []) {
    if (view.lines.has(line.seq)) continue; // a line never changes once sent: a repeat is dropped
    const element = lineElement(line);
    const after = view.order.findLastIndex((seq) => seq < line.seq);
    const next = view.order[after + 1];
    $("#lines").insertBefore(element, next === undefined ? null : view.lines.get(next).element);
    view.order.splice(after + 1, 0, line.seq);
    view.lines.set(line.seq, { line, element });
    fresh.push(line);
  }
  if (!fresh.length) return;
  $("#waiting").hidden = true;
  if (!document.title.includes("·")) document.title = `${view.lines.get(view.order[0]).line.text} · CantoneseScribe`;
  $("#announce").textContent = fresh.map((line) => line.text).join(" ");
}

function lineElement(line) {
  const item = document.createElement("li");
  item.className = "line";
  item.dataset.seq = line.seq;
  item.dataset.start = line.start;
  item.dataset.end = line.end;
  const time = document.createElement("button");
  time.type = "button";
  time.className = "time";
  time.textContent = clock(line.start);
  time.setAttribute("aria-label", `Play from ${clock(line.start)}: ${line.text}`);
  time.addEventListener("click", () => playLine(line.seq));
  const text = document.createElement("span");
  text.className = "text";
  text.lang = "yue-Hant";
  text.append(renderLine(line, view.reading));
  text.addEventListener("click", () => playLine(line.seq));
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", `Copy line ${line.seq + 1}`);
  copy.addEventListener("click", () => copyText(copy, `${line.text}\n${lineReading(line, view.reading)}`.trim()));
  item.append(time, text, copy);
  return item;
}

function rerender() {
  for (const { line, element } of view.lines.values()) {
    element.querySelector(".text").replaceChildren(renderLine(line, view.reading));
  }
}

function wireReadings() {
  for (const radio of document.querySelectorAll('input[name="reading"]')) {
    radio.checked = radio.value === view.reading;
    radio.addEventListener("change", () => {
      view.reading = radio.value;
      localStorage.setItem("scribe.reading", view.reading);
      document.body.classList.toggle("no-readings", view.reading === "none");
      rerender();
    });
  }
  document.body.classList.toggle("no-readings", view.reading === "none");
  const tones = $("#tones");
  tones.checked = view.tones;
  document.body.classList.toggle("tones", view.tones);
  tones.addEventListener("change", () => {
    view.tones = tones.checked;
    localStorage.setItem("scribe.tones", view.tones ? "1" : "0");
    document.body.classList.toggle("tones", view.tones);
  });
}

async function copyText(button, text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
}

// --- listening --------------------------------------------------------------------------------------

function loadAudio() {
  const audio = $("#audio");
  if (audioReady() || audio.getAttribute("src") || !view.job) return;
  $("#audio-note").textContent = "Loading the audio…";
  audio.src = `/v1/jobs/${view.job.id}/audio?token=${encodeURIComponent(view.job.token)}`;
  audio.load();
}

function wireAudio() {
  const audio = $("#audio");
  audio.addEventListener("loadedmetadata", () => {
    $("#audio-note").textContent = "";
    if (view.pending != null) {
      const seq = view.pending;
      view.pending = null;
      playLine(seq);
    }
  });
  audio.addEventListener("error", () => {
    // Stored once the whole input is decoded: try again while the job goes on.
    audio.removeAttribute("src");
    clearTimeout(view.audioRetry);
    view.audioTries += 1;
    if (view.audioTries > 10) {
      $("#audio-note").textContent = "The audio is not available: it is kept for a limited time after a job ends.";
      return;
    }
    $("#audio-note").textContent = "The audio can be played once the whole input has been read.";
    if (document.body.dataset.state === "running" || document.body.dataset.state === "done") {
      view.audioRetry = setTimeout(loadAudio, 3000);
    }
  });
  audio.addEventListener("timeupdate", followPlayback);
  audio.addEventListener("play", () => { $("#play").textContent = "Pause"; });
  audio.addEventListener("pause", () => { $("#play").textContent = "Play"; });
  $("#play").addEventListener("click", togglePlay);
  $("#prev").addEventListener("click", () => step(-1));
  $("#next").addEventListener("click", () => step(1));
  $("#repeat").addEventListener("click", repeatLine);
}

function playLine(seq, { stopAtEnd = false } = {}) {
  const entry = view.lines.get(seq);
  if (!entry) return;
  markCurrent(seq);
  const audio = $("#audio");
  if (!audioReady()) {
    view.pending = seq;
    loadAudio();
    return;
  }
  view.stopAt = stopAtEnd ? entry.line.end : null;
  audio.currentTime = entry.line.start;
  audio.play().catch(() => {});
}

function repeatLine() {
  const seq = view.current ?? view.order[0];
  if (seq !== undefined) playLine(seq, { stopAtEnd: true });
}

function step(by) {
  if (!view.order.length) return;
  const at = view.current == null ? -1 : view.order.indexOf(view.current);
  const seq = view.order[Math.min(view.order.length - 1, Math.max(0, at + by))];
  playLine(seq);
}

function togglePlay() {
  const audio = $("#audio");
  if (!audioReady()) {
    if (view.order.length) playLine(view.current ?? view.order[0]);
    return;
  }
  if (audio.paused) audio.play().catch(() => {});
  else audio.pause();
}

function followPlayback() {
  const time = $("#audio").currentTime;
  if (view.stopAt != null && time >= view.stopAt) {
    view.stopAt = null;
    $("#audio").pause();
  }
  let playing = null;
  for (const seq of view.order) {
    const { line } = view.lines.get(seq);
    if (line.start > time + 0.05) break;
    playing = seq;
  }
  if (playing !== null && playing !== view.current) markCurrent(playing);
}

function markCurrent(seq) {
  const before = view.lines.get(view.current)?.element;
  before?.classList.remove("current");
  before?.removeAttribute("aria-current");
  view.current = seq;
  const { element } = view.lines.get(seq);
  element.classList.add("current");
  element.setAttribute("aria-current", "true");
  element.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function wireKeys() {
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !view.job) return;
    const target = event.target;
    if (target.closest("input, textarea, select, [contenteditable]")) return;
    const button = target.closest("button, a, summary");
    switch (event.key) {
      case " ":
        if (button) return; // Space presses the focused button
        event.preventDefault();
        togglePlay();
        break;
      case "j": case "n": step(1); break;
      case "k": case "p": step(-1); break;
      case "r": repeatLine(); break;
      default:
    }
  });
}

// --- start ------------------------------------------------------------------------------------------

function start() {
  wireStart();
  wireReadings();
  wireAudio();
  wireKeys();
  $("#copy-share").addEventListener("click", () => copyText($("#copy-share"), $("#share").value));
  const match = /^\/jobs\/([^/]+)$/.exec(location.pathname);
  const token = new URLSearchParams(location.search).get("token");
  if (match && token) {
    openJob(decodeURIComponent(match[1]), token);
  } else if (match) {
    $("#start-view").hidden = true;
    $("#job-view").hidden = false;
    setState("failed");
    $("#status").textContent = "This transcript cannot be shown.";
    showError("This link has no token: open the full link you were given when the job was started.");
  }
  window.addEventListener("popstate", () => location.reload());
}

start();
