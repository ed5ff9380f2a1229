// Listening: play from a time, repeat one line and stop exactly at its end, loop it with a pause
// for shadowing, change the speed. A frame-by-frame watcher (requestAnimationFrame while playing,
// with timeupdate and a timer for a hidden tab) stops a held line at its end: timeupdate alone
// comes every 250 ms, enough to hear the start of the next line.

export const SPEEDS = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1, 1.1, 1.25, 1.5];
export const GAPS = ["0", "1", "2", "line"]; // seconds of silence between loops, or the line's length

const EARLY = 0.02; // stop this much before a line's end: a frame later the next line has begun

export class Player {
  /**
   * @param {HTMLAudioElement} audio
   * @param {(time: number) => void} onTick the position, every frame while playing and after a seek
   * @param {(state: object) => void} onState after any change of playing, hold, loop, gap or speed
   */
  constructor(audio, onTick, onState) {
    this.audio = audio;
    this.onTick = onTick;
    this.onState = onState;
    this.hold = null; // {seq, start, end}: the line playback stays in (repeat, loop)
    this.loop = false;
    this.gap = "0";
    this.waiting = null; // the timer of the pause between two loops
    this.stopTimer = null;
    this.frame = null;
    audio.preservesPitch = true;
    for (const name of ["play", "pause", "ratechange"]) audio.addEventListener(name, () => this.changed());
    audio.addEventListener("playing", () => this.watch());
    audio.addEventListener("seeked", () => { this.check(); this.onTick(audio.currentTime); });
    audio.addEventListener("timeupdate", () => { this.check(); if (this.frame == null) this.onTick(audio.currentTime); });
    audio.addEventListener("loadedmetadata", () => { audio.playbackRate = audio.defaultPlaybackRate; });
  }

  get ready() {
    return this.audio.readyState >= HTMLMediaElement.HAVE_METADATA;
  }

  get speed() {
    return this.audio.playbackRate;
  }

  setSpeed(rate) {
    const wanted = Number(rate) || 1;
    const speed = SPEEDS.reduce((best, step) => (Math.abs(step - wanted) < Math.abs(best - wanted) ? step : best));
    this.audio.defaultPlaybackRate = speed;
    this.audio.playbackRate = speed;
    this.audio.preservesPitch = true;
    this.arm();
    this.changed();
  }

  /** One step along SPEEDS (-1 slower, +1 faster). */
  stepSpeed(by) {
    const at = SPEEDS.findIndex((speed) => speed >= this.speed - 1e-6);
    this.setSpeed(SPEEDS[Math.min(SPEEDS.length - 1, Math.max(0, (at < 0 ? SPEEDS.length - 1 : at) + by))]);
  }

  setGap(gap) {
    this.gap = GAPS.includes(String(gap)) ? String(gap) : "0";
    this.changed();
  }

  /** Play from `time`; `line` ({seq, start, end}) holds playback in that line (stop, or loop, at its end). */
  playFrom(time, line = null) {
    this.cancelWait();
    this.hold = line;
    this.audio.currentTime = time;
    this.start();
  }

  /** Play the line once from its start and stop at its end (or loop it, when looping). */
  repeat(line) {
    this.playFrom(line.start, line);
  }

  /** Loop on or off; on, the line playing (`line`) repeats until it is turned off. */
  setLoop(on, line) {
    this.loop = on;
    if (on && line) {
      this.hold = line;
    } else if (!on) {
      this.cancelWait();
      this.hold = null; // the line is let go: playing goes on past its end
    }
    this.arm();
    this.changed();
  }

  /** Follow another line: a loop moves to it; a one-off repeat ends. */
  moveTo(line) {
    this.playFrom(line.start, this.loop ? line : null);
  }

  toggle() {
    if (this.waiting) { // Space in the pause between loops: go on at once
      this.cancelWait();
      this.audio.currentTime = this.hold.start;
      this.start();
      return;
    }
    if (!this.audio.paused) {
      this.audio.pause();
      return;
    }
    if (this.hold && this.audio.currentTime >= this.hold.end - EARLY - 0.01) this.audio.currentTime = this.hold.start;
    this.start();
  }

  pause() {
    this.cancelWait();
    this.audio.pause();
  }

  start() {
    this.audio.play().catch(() => {});
    this.arm();
    this.changed();
  }

  // --- the watcher ---------------------------------------------------------------------------------

  watch() {
    if (this.frame != null) return;
    const step = () => {
      this.frame = null;
      if (this.audio.paused) return;
      if (!this.check()) this.onTick(this.audio.currentTime);
      this.frame = requestAnimationFrame(step);
    };
    this.frame = requestAnimationFrame(step);
    this.arm();
  }

  // A timer for the moment the held line ends, for when frames stop (a hidden tab).
  arm() {
    clearTimeout(this.stopTimer);
    if (!this.hold || this.audio.paused) return;
    const left = (this.hold.end - EARLY - this.audio.currentTime) / (this.audio.playbackRate || 1);
    this.stopTimer = setTimeout(() => { if (!this.check()) this.arm(); }, Math.max(0, left * 1000 - 5));
  }

  /** Stop (and maybe loop) if the held line has ended; whether it had. */
  check() {
    const hold = this.hold;
    if (!hold || this.audio.paused || this.audio.currentTime < hold.end - EARLY) return false;
    this.audio.pause();
    this.audio.currentTime = hold.start; // back to the line's start: it stays the current line
    this.onTick(hold.start);
    if (this.loop) {
      const pause = this.gap === "line" ? (hold.end - hold.start) / (this.audio.playbackRate || 1) : Number(this.gap);
      this.waiting = setTimeout(() => {
        this.waiting = null;
        if (this.hold === hold && this.loop) this.start();
        else this.changed();
      }, pause * 1000);
    } else {
      this.hold = null;
    }
    this.changed();
    return true;
  }

  cancelWait() {
    clearTimeout(this.waiting);
    this.waiting = null;
  }

  changed() {
    this.onState({
      playing: !this.audio.paused,
      waiting: this.waiting != null,
      loop: this.loop,
      hold: this.hold,
      speed: this.speed,
      gap: this.gap,
    });
  }
}
