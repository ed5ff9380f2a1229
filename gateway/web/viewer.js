// The viewer: start a job, read its lines as they come with readings over each character, and
// listen along. Everything comes from the gateway's API (see the README); nothing else is fetched.

import { wireAccount } from "./account.js";
import { account, apiFetch, check, expectsKeys, readOnly, storedKey, subprotocols } from "./auth.js";
import { Card } from "./card.js";
import { remember, remembered } from "./history.js";
import { GAPS, Player, SPEEDS } from "./player.js";
import { JobProgress } from "./progress.js";
import { wireRecord } from "./record.js";
import { READINGS, UNSURE_BELOW } from "./ruby.js";
import { showHistory, showStart, wireStart } from "./start.js";
import { JobStream } from "./stream.js";
import { Transcript } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
// What a refusal means to someone who opened a link, whatever the API's words for developers.
const WRONG_LINK = "This link is wrong or incomplete: part of it is missing or mistyped. Open the whole link you "
  + "were given when the transcript was started (it ends with “?token=” and 32 letters and digits).";
const REFUSALS = {
  unauthorized: WRONG_LINK,
  not_found: "There is no transcript at this address. Check that the link is complete, or start a new transcript.",
  purged: "This transcript was deleted on request, so it cannot be shown any more.",
  gone: "This transcript was deleted on request, so it cannot be shown any more.",
  bad_request: "This link is damaged. Open the whole link you were given again.",
};
const OWNER_ONLY = "Only the owner can correct lines: sign in with their API key on the start page.";
// How a file's name says which reading lines it shows (json and csv carry every reading).
const FILE_READING = {
  jyutping: "jyutping", yale: "yale", yale_numeric: "yale numbers", both: "jyutping and yale", none: "characters",
};

function stored(key, allowed, fallback) {
  const value = localStorage.getItem(key);
  return allowed.includes(value) ? value : fallback;
}

const view = {
  job: null, // {id, token}; token is null when the owner's API key opened the job (from their list)
  title: null,
  reading: stored("scribe.reading", READINGS, "jyutping"),
  downloadReading: null, // chosen for the downloads; null: the page's reading
  pending: null, // what to play once the audio has loaded
  audioTries: 0,
  audioRetry: null,
  stream: null,
  channel: null, // BroadcastChannel: this job's corrections between this browser's windows
  ticker: null,
  lagging: null, // clears a live session's "behind" note
};

let transcript;
let player;
let card;
let progress;

function plainRefusal(code, message) {
  return REFUSALS[code] || message || "Something went wrong.";
}

function setState(state) {
  document.body.dataset.state = state;
}

// --- a job ------------------------------------------------------------------------------------------

// `live`: this page records the job (record.js feeds onEnvelope); its stream opens when the recording ends.
function openJob(id, token, { live = false } = {}) {
  view.job = { id, token };
  $("#start-view").hidden = true;
  $("#job-view").hidden = false;
  $("#player").hidden = false;
  document.body.classList.toggle("read-only", readOnly());
  setState("running");
  view.ticker = setInterval(() => {
    if (document.body.dataset.state === "running" && progress.status) progress.show();
  }, 1000);
  const known = remembered().find((job) => job.id === id); // listed once the server has accepted the link
  if (known?.title) setTitle(known.title);
  setDownloads();
  // Opened with the key alone (an address without its token) the page has no link to share.
  $(".share-block").hidden = !token;
  if (token) $("#share").value = `${location.origin}/jobs/${id}?token=${encodeURIComponent(token)}`;
  fetchStatus();
  view.stream = new JobStream(id, subprotocols(token), onEnvelope, onConnection);
  if (!live) view.stream.open();
  // Corrections: another window of this browser hears of one at once; a page of a finished job (whose
  // stream has closed) asks again whenever it is looked at.
  if ("BroadcastChannel" in window) {
    view.channel = new BroadcastChannel(`scribe.job.${id}`);
    view.channel.addEventListener("message", (event) => {
      if (event.data?.segment) transcript.replace(event.data.segment);
    });
  }
  const resync = () => { if (document.visibilityState === "visible") view.stream.resync(); };
  document.addEventListener("visibilitychange", resync);
  window.addEventListener("focus", resync);
}

// This page's recording has made its job: the job's page, as a share link would open it.
function openLive(session) {
  remember({ id: session.job_id, token: session.token, status: "running" });
  history.pushState(null, "", session.links.page);
  openJob(session.job_id, session.token, { live: true });
}

// The recording's socket has closed: after its end, or with what went wrong (`message`). The job goes on
// (what was heard is transcribed), so the page follows it as any of its pages does.
function liveEnded(message) {
  if (message) showError(message);
  view.stream.lastLine = transcript.order.length ? transcript.order[transcript.order.length - 1] : -1;
  view.stream.open();
}

function api(path, options = {}) {
  return apiFetch(path, { ...options, token: view.job.token });
}

// "Your transcripts" of this browser keeps a job with its token (a job opened with a key alone is not kept).
function rememberJob(fields) {
  if (view.job.token) remember({ id: view.job.id, token: view.job.token, ...fields });
}

// The job's title (the file's name or the video's) and length, for the heading, the file names and the list.
async function fetchStatus() {
  try {
    const response = await api(`/v1/jobs/${view.job.id}`);
    if (!response.ok) return;
    const status = await response.json();
    if (status.title) setTitle(status.title);
    rememberJob({ title: status.title, duration: status.progress?.duration, status: status.status });
  } catch {
    // The stream says what is wrong, if anything is.
  }
}

function setTitle(title) {
  view.title = title;
  $("#job-title").textContent = title;
  document.title = `${title} · CantoneseScribe`;
  setDownloads();
}

// As the server names it (Content-Disposition): the title and the reading lines the file shows.
function downloadName(format, reading) {
  const stem = (view.title || "").normalize("NFC").replace(/[\u0000-\u001f\u007f"*/:<>?\\|]+/g, "_")
    .replace(/^[ ._]+|[ ._]+$/g, "").slice(0, 100).trim() || view.job.id;
  return format === "json" || format === "csv" ? `${stem}.${format}` : `${stem} (${FILE_READING[reading]}).${format}`;
}

function setDownloads() {
  if (!view.job) return;
  const reading = view.downloadReading || (view.reading === "none" ? "none" : view.reading);
  $("#download-reading").value = reading;
  // Without a token (the owner's key opened the job) a link cannot carry the key: a click fetches the file.
  const token = view.job.token ? `&token=${encodeURIComponent(view.job.token)}` : "";
  for (const link of document.querySelectorAll("a.download")) {
    const format = link.dataset.format;
    link.href = `/v1/jobs/${view.job.id}/transcript?format=${format}&romanization=${reading}${token}`;
    link.setAttribute("download", downloadName(format, reading));
  }
}

async function downloadWithKey(event) {
  const link = event.target.closest("a.download");
  if (!link || !view.job || view.job.token) return;
  event.preventDefault();
  try {
    const { pathname, search } = new URL(link.href);
    const response = await api(pathname + search);
    if (!response.ok) throw new Error(String(response.status));
    const url = URL.createObjectURL(await response.blob());
    const save = Object.assign(document.createElement("a"), { href: url, download: link.getAttribute("download") });
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch {
    showError("The file could not be downloaded just now. Try again in a moment.");
  }
}

function onConnection(state, delay) {
  if (state === "reconnecting") {
    $("#status").textContent = `Connection lost; reconnecting${delay ? ` in ${Math.round(delay / 1000)} s` : ""}…`;
  } else if (state === "live" && document.body.dataset.state === "running") {
    progress.show();
  }
}

function onEnvelope(envelope) {
  switch (envelope.type) {
    case "snapshot":
      rememberJob({ status: envelope.status, duration: envelope.progress?.duration });
      progress.set(envelope.progress);
      setWarnings(envelope.warnings);
      addLines(envelope.segments);
      progress.status = envelope.status; // a finished job's terminal event follows at once
      if (envelope.status === "queued" || envelope.status === "running") setState("running");
      progress.show();
      if (envelope.status === "done" || envelope.progress?.seconds_decoded >= (envelope.progress?.duration ?? Infinity)) {
        loadAudio();
      }
      break;
    case "progress":
      progress.set(envelope);
      if (envelope.input_ended) loadAudio();
      break;
    case "heartbeat":
      progress.set(envelope.progress);
      break;
    case "segments":
      addLines(envelope.segments);
      progress.status = "running";
      progress.show();
      break;
    case "revised":
      if (envelope.segment) transcript.replace(envelope.segment);
      break;
    case "interim": // a live session's line in progress
      transcript.setInterim(envelope);
      if (transcript.interim) $("#waiting").hidden = true;
      break;
    case "lagging":
      $("#live-note").textContent = envelope.message;
      clearTimeout(view.lagging);
      view.lagging = setTimeout(() => { $("#live-note").textContent = ""; }, 10000);
      break;
    case "final":
      transcript.setInterim(null);
      setWarnings([
        ...(envelope.warnings || []),
        ...(envelope.usage?.cache_hit && envelope.segment_count ? [CACHED] : []),
      ]);
      progress.status = "done";
      setState("done");
      progress.show();
      loadAudio();
      rememberJob({ status: "done", duration: envelope.duration });
      if (!view.title) fetchStatus(); // a video's title may have been learnt on the way
      break;
    case "failed":
    case "cancelled":
      transcript.setInterim(null);
      progress.status = envelope.type;
      setState(envelope.type);
      showError(envelope.reason);
      progress.show();
      player.pause();
      rememberJob({ status: envelope.type });
      break;
    case "error":
      if (envelope.retryable) { // the server is busy or briefly down: the stream reconnects by itself
        $("#status").textContent = envelope.message;
        break;
      }
      setState("failed");
      showError(plainRefusal(envelope.code, envelope.message));
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

const CACHED = "Transcribed before with the same settings: answered from the cache at once, billed nothing. "
  + "Tick “Transcribe again” when you start a transcript to have it transcribed afresh.";

function setWarnings(warnings) {
  const list = $("#warnings");
  list.replaceChildren(...(warnings || []).map((text) => {
    const item = document.createElement("li");
    item.textContent = text;
    return item;
  }));
}

// --- lines ------------------------------------------------------------------------------------------

function addLines(segments) {
  const fresh = transcript.add(segments);
  if (!fresh.length) return;
  $("#waiting").hidden = true;
  if (!view.title && !document.title.includes("·")) document.title = `${transcript.get(transcript.order[0]).line.text} · CantoneseScribe`;
  $("#announce").textContent = fresh.map((line) => line.text).join(" ");
}

// PATCH a correction; the new line, or what stands in the way in words a learner understands.
async function saveLine(seq, text, revision) {
  let response;
  let body = null;
  try {
    response = await api(`/v1/jobs/${view.job.id}/lines/${seq}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, revision }),
    });
    body = await response.json().catch(() => null);
  } catch {
    return { message: "The server could not be reached, so the correction was not saved. Try again in a moment." };
  }
  if (response.ok && body && typeof body.seq === "number") {
    view.channel?.postMessage({ segment: body });
    return { segment: body };
  }
  const code = body?.error?.code;
  if (response.status === 409 && code === "line_changed") {
    return { conflict: await fetchLine(seq), message: body.error.message };
  }
  if (code === "forbidden" || (response.status === 401 && account.mode === "keys")) return { message: OWNER_ONLY };
  if (response.status === 401 || response.status === 403) return { message: WRONG_LINK };
  if (response.status === 400 && body?.error?.message) return { message: body.error.message };
  const why = body?.error?.message || `the server answered ${response.status}`;
  return { message: `The correction was not saved: ${why}` };
}

// One line as the server now has it (after someone else's correction).
async function fetchLine(seq) {
  try {
    const response = await api(`/v1/jobs/${view.job.id}/transcript?format=json`, { cache: "no-store" });
    if (!response.ok) return null;
    const transcriptJson = await response.json();
    return (transcriptJson.segments || []).find((line) => line.seq === seq) || null;
  } catch {
    return null;
  }
}

function wireReadings() {
  const select = $("#reading");
  select.value = view.reading;
  document.body.classList.toggle("no-readings", view.reading === "none");
  select.addEventListener("change", () => {
    view.reading = select.value;
    localStorage.setItem("scribe.reading", view.reading);
    document.body.classList.toggle("no-readings", view.reading === "none");
    transcript.setReading(view.reading);
    setDownloads();
  });
  $("#download-reading").addEventListener("change", () => {
    view.downloadReading = $("#download-reading").value;
    setDownloads();
  });
  switchClass("#tones", "scribe.tones", "tones", false);
  switchClass("#unsure-marks", "scribe.unsure", "unsure-marks", true);
  $("#unsure-percent").textContent = String(Math.round(UNSURE_BELOW * 100));
}

// A checkbox that puts a class on the body, remembered in the browser.
function switchClass(selector, key, className, fallback) {
  const box = $(selector);
  const saved = localStorage.getItem(key);
  box.checked = saved == null ? fallback : saved === "1";
  document.body.classList.toggle(className, box.checked);
  box.addEventListener("change", () => {
    localStorage.setItem(key, box.checked ? "1" : "0");
    document.body.classList.toggle(className, box.checked);
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
  if (player.ready || audio.getAttribute("src") || !view.job) return;
  if (!view.job.token) { // an <audio> cannot send the key; "Your transcripts" links each job with its token
    $("#audio-note").textContent = "To listen, open the transcript's full link (the one with “?token=”): this "
      + "browser did not keep it.";
    return;
  }
  $("#audio-note").textContent = "Loading the audio…";
  audio.src = `/v1/jobs/${view.job.id}/audio?token=${encodeURIComponent(view.job.token)}`;
  audio.load();
}

function wireAudio() {
  const audio = $("#audio");
  const speed = $("#speed");
  speed.replaceChildren(...SPEEDS.map((rate) => new Option(`${rate}×`, String(rate))));
  player = new Player(audio, onTick, showPlayer);
  player.setSpeed(Number(localStorage.getItem("scribe.speed")) || 1);
  player.setGap(stored("scribe.gap", GAPS, "0"));
  audio.addEventListener("loadedmetadata", () => {
    $("#audio-note").textContent = "";
    const pending = view.pending;
    view.pending = null;
    pending?.();
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
  speed.addEventListener("change", () => player.setSpeed(Number(speed.value)));
  $("#gap").addEventListener("change", () => player.setGap($("#gap").value));
  $("#play").addEventListener("click", togglePlay);
  $("#prev").addEventListener("click", () => step(-1));
  $("#next").addEventListener("click", () => step(1));
  $("#repeat").addEventListener("click", repeatLine);
  $("#loop").addEventListener("click", toggleLoop);
  showPlayer({ playing: false, waiting: false, loop: false, speed: player.speed, gap: player.gap });
}

function showPlayer(state) {
  const play = $("#play");
  play.querySelector(".icon").textContent = state.playing ? "❚❚" : "▶";
  play.querySelector(".word").textContent = state.playing ? " Pause" : " Play";
  play.setAttribute("aria-label", state.playing ? "Pause" : "Play");
  $("#loop").setAttribute("aria-pressed", String(state.loop));
  $("#speed").value = String(state.speed);
  $("#gap").value = state.gap;
  localStorage.setItem("scribe.speed", String(state.speed));
  localStorage.setItem("scribe.gap", state.gap);
  document.body.classList.toggle("looping", state.loop);
  if (state.waiting) $("#audio-note").textContent = "Your turn: say the line.";
  else if ($("#audio-note").textContent === "Your turn: say the line.") $("#audio-note").textContent = "";
}

// Every frame while playing: the line and the character being spoken. A held line (repeat, loop)
// stays current whatever the time says.
function onTick(time) {
  const seq = player.hold ? player.hold.seq : transcript.lineAt(time);
  transcript.follow(seq, time);
}

function span(seq) {
  const line = transcript.get(seq)?.line;
  return line ? { seq, start: line.start, end: line.end } : null;
}

// Until the audio has loaded, what was asked for waits (the line is marked at once).
function whenReady(seq, play) {
  transcript.follow(seq, null);
  if (player.ready) {
    play();
    return;
  }
  view.pending = play;
  loadAudio();
}

function seek(seq, time) {
  const line = span(seq);
  if (line) whenReady(seq, () => player.playFrom(time, player.loop ? line : null));
}

function repeatLine() {
  const line = span(transcript.current ?? transcript.order[0]);
  if (line) whenReady(line.seq, () => player.repeat(line));
}

function toggleLoop() {
  const line = span(transcript.current ?? transcript.order[0]);
  player.setLoop(!player.loop, line);
}

function step(by) {
  const order = transcript.order;
  if (!order.length) return;
  const at = transcript.current == null ? -1 : order.indexOf(transcript.current);
  const line = span(order[Math.min(order.length - 1, Math.max(0, at + by))]);
  whenReady(line.seq, () => player.moveTo(line));
}

function togglePlay() {
  if (!player.ready) {
    const seq = transcript.current ?? transcript.order[0];
    if (seq !== undefined) seek(seq, transcript.get(seq).line.start);
    return;
  }
  player.toggle();
}

function showMeaning(seq, word) {
  player.pause();
  card.show(seq, word);
}

// --- keys: the same whatever has focus, except a text field ---------------------------------------------

const TEXT_FIELD = "input:not([type]), input[type=text], input[type=url], input[type=search], input[type=email], "
  + "input[type=number], input[type=password], textarea, [contenteditable]:not([contenteditable=false])";
const KEYS = {
  " ": togglePlay,
  j: () => step(1),
  n: () => step(1),
  k: () => step(-1),
  p: () => step(-1),
  r: repeatLine,
  l: toggleLoop,
  "[": () => player.stepSpeed(-1),
  "-": () => player.stepSpeed(-1),
  "]": () => player.stepSpeed(1),
  "+": () => player.stepSpeed(1),
  "=": () => player.stepSpeed(1),
  e: () => {
    if (readOnly()) $("#audio-note").textContent = OWNER_ONLY;
    else transcript.edit(transcript.current ?? transcript.order[0]);
  },
  m: () => {
    const word = transcript.activeWord();
    if (word) showMeaning(word.seq, word.word);
  },
};

function wireKeys() {
  // Capture, on the window: before a focused button, select or the audio's own controls act on the key.
  window.addEventListener("keydown", (event) => {
    if (!view.job || event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
    const target = event.target instanceof Element ? event.target : document.body;
    if (target.closest(TEXT_FIELD)) return;
    if (event.key === "Escape" && card.open) {
      event.preventDefault();
      card.close();
      return;
    }
    const action = KEYS[event.key];
    if (!action || document.body.dataset.state === "failed" || document.body.dataset.state === "cancelled") return;
    if (event.key === " " && target.closest("input[type=checkbox], input[type=radio]")) return; // Space ticks those
    event.preventDefault();
    event.stopPropagation();
    if (event.repeat && event.key === " ") return;
    action();
  }, true);
  // A button is pressed when Space comes up: never, when Space was ours.
  window.addEventListener("keyup", (event) => {
    const target = event.target instanceof Element ? event.target : document.body;
    if (event.key === " " && view.job && !target.closest(TEXT_FIELD) && !target.closest("input[type=checkbox], input[type=radio]")) {
      event.preventDefault();
    }
  }, true);
}

// --- start ------------------------------------------------------------------------------------------

function showIncomplete() {
  $("#start-view").hidden = true;
  $("#job-view").hidden = false;
  setState("failed");
  $("#status").textContent = "This transcript cannot be shown.";
  const yours = account.mode === "keys" ? " If it is yours, sign in with your API key on the start page, then open "
    + "it from your list." : "";
  showError("This link is incomplete: the part that starts with “?token=” is missing. Open the whole link you "
    + `were given when the transcript was started.${yours}`);
}

async function start() {
  transcript = new Transcript($("#lines"), view.reading, {
    seek,
    meaning: showMeaning,
    save: saveLine,
    copy: copyText,
    stickyBottom: () => $("#top").getBoundingClientRect().bottom,
  });
  progress = new JobProgress({ status: $("#status"), bar: $("#progress"), eta: $("#eta") }, () => {
    const last = transcript.order.length ? transcript.get(transcript.order[transcript.order.length - 1]) : null;
    return { done: last ? last.line.end : 0, count: transcript.order.length };
  });
  card = new Card($("#card"), {
    words: (seq) => transcript.wordsOf(seq),
    word: (seq, word) => transcript.get(seq)?.line.words?.[word],
    element: (seq, word) => transcript.wordElement(seq, word),
    play: (seq, word) => {
      const cell = transcript.get(seq)?.allCells.find((c) => c.word === word);
      seek(seq, cell?.start ?? transcript.get(seq).line.start);
    },
  });
  wireStart(openJob);
  wireRecord({
    reading: () => view.reading,
    protocols: () => subprotocols(null),
    opened: openLive,
    envelope: onEnvelope,
    ended: liveEnded,
  });
  wireReadings();
  wireAudio();
  wireKeys();
  $("#copy-share").addEventListener("click", () => copyText($("#copy-share"), $("#share").value));
  $(".downloads").addEventListener("click", downloadWithKey);
  wireAccount(showStart);
  window.addEventListener("popstate", () => location.reload());
  const match = /^\/jobs\/([^/]+)$/.exec(location.pathname);
  const id = match ? decodeURIComponent(match[1]) : null;
  const token = new URLSearchParams(location.search).get("token");
  // A stored key is sent only once the server has taken it: a revoked one would have even a share link refused.
  let checked = storedKey() ? await check() : null;
  if (id && (token || account.key)) {
    openJob(id, token);
  } else if (id) {
    showIncomplete();
  } else if (checked) {
    showStart(checked.message);
  } else {
    if (expectsKeys()) document.body.dataset.auth = "checking"; // no form until the server says if it needs a key
    showHistory();
  }
  if (!checked) {
    checked = await check();
    if (!id) showStart(checked.message);
    else if (!token && !account.key && account.mode === "keys") showIncomplete();
  }
  document.body.classList.toggle("read-only", readOnly());
}

start();
