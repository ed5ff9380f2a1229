// Record: the microphone into a live session (WS /v1/live, see gateway/live.py). MediaRecorder's Opus
// slices go out as they come (WebM; Ogg where only that is recorded: Firefox); the job's messages come
// back: `session` first (the job's id, token and links), then what /v1/jobs/{id}/stream sends, plus
// `interim` and `lagging`. Stop sends close_stream after the recorder's last slice; the server then
// transcribes the rest, sends `final` and closes.

import { clock } from "./transcript.js";

const $ = (selector) => document.querySelector(selector);
const SLICE_MS = 250;
const FORMATS = [["audio/webm;codecs=opus", "webm"], ["audio/ogg;codecs=opus", "ogg"]];
const TERMINAL = new Set(["final", "failed", "cancelled"]);
// The page's reading as the session's romanization (every reading is made whatever it says).
const ROMANIZATION = { jyutping: "jyutping", yale: "yale", yale_numeric: "yale" };

const SAID = {
  NotAllowedError: "The browser did not let this page use the microphone. Allow the microphone for this site "
    + "(the icon at the left of the address bar), then press Record again.",
  NotFoundError: "No microphone was found. Connect one, or choose one in your computer's sound settings, then "
    + "press Record again.",
  NotReadableError: "The microphone could not be started: another program may be using it. Close that "
    + "program, then press Record again.",
  insecure: "Recording needs a secure page: open this site with an address that starts with https:// "
    + "(or at localhost on this computer).",
  noOpus: "This browser cannot record the Opus audio that live transcription needs. Use a current Chrome, "
    + "Edge or Firefox, or record with another app and transcribe the file.",
  busy: "Every transcriber is busy with other live sessions just now, so recording could not start. Try again "
    + "in a minute, or transcribe a file instead.",
  unreachable: "The server could not be reached, so recording could not start. Check your connection, then "
    + "press Record again.",
  dropped: "The connection to the server was lost, so the recording stopped there. What was heard until then "
    + "is kept, and its transcript is finished here.",
};
SAID.SecurityError = SAID.NotAllowedError;
SAID.OverconstrainedError = SAID.NotFoundError;
SAID.AbortError = SAID.NotReadableError;

/** The MIME type and the /v1/live encoding this browser records in, or null. */
export function recordingFormat() {
  if (!window.MediaRecorder) return null;
  const found = FORMATS.find(([mime]) => MediaRecorder.isTypeSupported(mime));
  return found ? { mime: found[0], encoding: found[1] } : null;
}

/**
 * One live session: the microphone, its level, the recorder and the socket.
 *
 * Hooks: session(envelope) once the server has made the job; envelope(envelope) for every later
 * message; level(0-1) every frame while recording; end({refused, message}) once, when the socket
 * has closed: `refused` when no session was made, `message` a sentence for the reader (null after
 * a normal end).
 */
export class LiveSession {
  constructor(protocols, romanization, hooks) {
    this.protocols = protocols;
    this.romanization = romanization;
    this.hooks = hooks;
    this.format = null; // {mime, encoding}
    this.stream = null; // the microphone
    this.audio = null; // AudioContext for the level meter
    this.recorder = null;
    this.socket = null;
    this.job = null; // the session envelope
    this.began = null; // when the recorder started (performance.now())
    this.said = null; // the sentence for an error the server sent
    this.stopped = false;
    this.finished = false;
    this.ended = false;
  }

  /** Asks for the microphone, then opens the session. A sentence when it cannot (nothing is left open). */
  async start() {
    if (!navigator.mediaDevices?.getUserMedia) return SAID.insecure;
    const format = recordingFormat();
    if (!format) return SAID.noOpus;
    try {
      // Whisper does better on speech as it was said: no noise suppression; the gain keeps quiet microphones audible.
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: true },
      });
    } catch (error) {
      return SAID[error?.name] || `The microphone could not be started (${error?.name || error}). Press Record again.`;
    }
    this.format = format;
    this.meter();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = `encoding=${format.encoding}&romanization=${ROMANIZATION[this.romanization] || "both"}`;
    this.socket = new WebSocket(`${scheme}//${location.host}/v1/live?${query}`, this.protocols);
    this.socket.onmessage = (message) => this.received(JSON.parse(message.data));
    this.socket.onclose = (event) => this.closed(event);
    return null;
  }

  /** Seconds recorded so far. */
  get seconds() {
    return this.began == null ? 0 : (performance.now() - this.began) / 1000;
  }

  get recording() {
    return this.recorder?.state === "recording";
  }

  /** Stop recording: the recorder's last slice goes out, then close_stream; the transcript's end follows. */
  stop() {
    if (!this.recording) this.send(JSON.stringify({ type: "close_stream" }));
    this.release(); // the recorder's "stop" event sends close_stream after its last slice
  }

  received(envelope) {
    if (envelope.type === "session") {
      this.job = envelope;
      this.hooks.session(envelope);
      this.record();
      return;
    }
    if (envelope.type === "error") {
      this.said = envelope.code === "busy" ? SAID.busy : envelope.message;
      this.release();
      return;
    }
    if (TERMINAL.has(envelope.type)) {
      this.finished = true;
      this.release(); // the server may end the session itself (its time limit, or silence)
    }
    this.hooks.envelope(envelope);
  }

  record() {
    if (this.stopped) return;
    this.recorder = new MediaRecorder(this.stream, { mimeType: this.format.mime });
    this.recorder.ondataavailable = (event) => { if (event.data.size) this.send(event.data); };
    this.recorder.onstop = () => this.send(JSON.stringify({ type: "close_stream" }));
    this.recorder.start(SLICE_MS);
    this.began = performance.now();
  }

  send(data) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(data);
  }

  closed(event) {
    this.release();
    if (this.ended) return;
    this.ended = true;
    if (!this.job) {
      const said = this.said || (event.code === 1013 ? SAID.busy : SAID.unreachable);
      this.hooks.end({ refused: true, message: said });
    } else {
      this.hooks.end({ refused: false, message: this.finished ? null : this.said || SAID.dropped });
    }
  }

  // The microphone's level, every frame: an AnalyserNode's loudness on a 60 dB scale.
  meter() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    this.audio = new Context();
    const analyser = this.audio.createAnalyser();
    analyser.fftSize = 1024;
    this.audio.createMediaStreamSource(this.stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let shown = 0;
    const frame = () => {
      if (!this.audio) return;
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const sample of samples) sum += sample * sample;
      const decibels = 10 * Math.log10(sum / samples.length + 1e-12);
      const level = Math.min(1, Math.max(0, (decibels + 60) / 60));
      shown = Math.max(level, shown - 0.03); // falls back slowly, as a meter's needle does
      this.hooks.level(shown);
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  // The recorder, the microphone and the meter off (the socket stays open for the transcript's end).
  release() {
    this.stopped = true;
    if (this.recording) this.recorder.stop();
    for (const track of this.stream?.getTracks() || []) track.stop();
    this.audio?.close();
    this.audio = null;
    this.hooks.level(0);
  }
}

/**
 * The Record button and the recording bar. Hooks: reading() the page's reading; protocols() the
 * socket's credentials; opened(envelope) the session's job is made: show its page; envelope(envelope)
 * each later message, as a job's stream gives them; ended(message) the session is over (message: why,
 * if it ended badly): follow the job as any of its pages does.
 */
export function wireRecord(hooks) {
  let session = null;
  let ticker = null;
  const button = $("#record");
  const error = $("#record-error");
  const bar = $("#level-bar");

  const showTime = () => { $("#rec-time").textContent = clock(session ? session.seconds : 0); };
  const finish = () => {
    clearInterval(ticker);
    document.body.classList.remove("recording");
    button.disabled = false;
    button.lastChild.textContent = " Record";
    session = null;
  };

  button.addEventListener("click", async () => {
    if (session) return;
    error.textContent = "";
    button.disabled = true;
    button.lastChild.textContent = " Starting…";
    session = new LiveSession(hooks.protocols(), hooks.reading(), {
      session: (envelope) => {
        document.body.classList.add("recording");
        $("#rec-state").textContent = "Recording";
        $("#stop").disabled = false;
        ticker = setInterval(showTime, SLICE_MS);
        showTime();
        hooks.opened(envelope);
      },
      envelope: (envelope) => {
        if (TERMINAL.has(envelope.type)) {
          clearInterval(ticker);
          showTime();
        }
        hooks.envelope(envelope);
      },
      level: (level) => { bar.style.transform = `scaleX(${level.toFixed(3)})`; },
      end: ({ refused, message }) => {
        finish();
        if (refused) error.textContent = message;
        else hooks.ended(message);
      },
    });
    const said = await session.start();
    if (said) {
      finish();
      error.textContent = said;
    }
  });

  $("#stop").addEventListener("click", () => {
    if (!session) return;
    session.stop();
    clearInterval(ticker);
    showTime();
    $("#stop").disabled = true;
    $("#rec-state").textContent = "Finishing: the last words are being transcribed…";
  });
}
