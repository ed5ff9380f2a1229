// A job's progress: the status line, the bar, and an estimate of the time left.

import { clock } from "./transcript.js";

const STATUS_WORDS = {
  queued: "Waiting for a free worker…",
  running: "Transcribing…",
  done: "Done.",
  failed: "This transcript could not be finished.",
  cancelled: "This job was cancelled.",
};

export class JobProgress {
  /**
   * @param {{status: HTMLElement, bar: HTMLProgressElement, eta: HTMLElement}} elements
   * @param {() => {done: number, count: number}} lines the seconds transcribed and the lines so far
   */
  constructor(elements, lines) {
    this.elements = elements;
    this.lines = lines;
    this.status = null; // the job's status as the stream last told it
    this.progress = { seconds_decoded: 0, duration: null };
    this.first = null; // [wall seconds, seconds transcribed] when this page started watching
    this.lastDone = null;
    this.eta = null; // {at, left}: the last estimate of the seconds left, counted down between lines
  }

  set(progress) {
    if (!progress) return;
    this.progress = { seconds_decoded: progress.seconds_decoded ?? 0, duration: progress.duration ?? null };
    this.show();
  }

  show() {
    const { seconds_decoded: decoded, duration } = this.progress;
    const { done, count } = this.lines();
    const { status: line, bar, eta } = this.elements;
    const status = this.status || "running";
    if (status !== "running" && status !== "queued") {
      bar.max = 1;
      bar.value = 1;
      const lines = count ? ` ${count} line${count === 1 ? "" : "s"}${duration ? `, ${clock(duration)} of audio` : ""}.` : "";
      line.textContent = `${STATUS_WORDS[status]}${lines}`;
      eta.textContent = "";
      return;
    }
    if (duration) {
      bar.max = duration;
      bar.value = Math.min(duration, done);
    } else {
      bar.removeAttribute("value"); // an indeterminate bar: the length is not known yet
    }
    const heard = decoded ? ` (audio read: ${clock(decoded)})` : "";
    line.textContent = status === "queued" && !done
      ? STATUS_WORDS.queued
      : `Transcribed ${clock(done)}${duration ? ` of ${clock(duration)}` : ""}${heard}.`;
    eta.textContent = this.estimate(done, duration);
  }

  // Lines come in bursts (one per chunk, several chunks at once), so the pace is measured from the
  // moment this page started watching, re-estimated only when new lines arrive, once a sixth of
  // the audio has come in since then, and counted down in between.
  estimate(done, duration) {
    const now = performance.now() / 1000;
    this.first ??= [now, done];
    if (done !== this.lastDone) {
      this.lastDone = done;
      const [t0, d0] = this.first;
      const rate = (done - d0) / (now - t0);
      if (duration && rate > 0 && done - d0 >= duration / 6) this.eta = { at: now, left: (duration - done) / rate };
    }
    if (!duration) return "";
    if (!this.eta) return "Estimating the time left…";
    const left = this.eta.left - (now - this.eta.at);
    if (left < 10) return "Almost there.";
    return `About ${left < 90 ? `${Math.round(left / 5) * 5} s` : `${Math.round(left / 60)} min`} left.`;
  }
}
