// The transcript's lines on the page: rendered as ruby cells, the line and the character being
// played highlighted (karaoke), the playing line kept in the upper third of the view, clicks on
// characters, and correcting a line in place.

import { lineReading, renderLine } from "./ruby.js";

const LETTERS = /[\p{L}\p{N}]/u;
const PUNCTUATION_ONLY = /^[\s\p{P}\p{S}]*$/u;

/** "m:ss" or "h:mm:ss". */
export function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export class Transcript {
  /**
   * @param {HTMLOListElement} list
   * @param {object} hooks
   *   seek(seq, time): play line `seq` from `time`;
   *   meaning(seq, word, element): show the meaning of word `word` of line `seq`;
   *   save(seq, text, revision): a Promise of {segment} | {conflict: segment | null, message} | {message};
   *   copy(button, text);
   *   stickyBottom(): the bottom of what covers the top of the view, in pixels.
   */
  constructor(list, reading, hooks) {
    this.list = list;
    this.reading = reading;
    this.hooks = hooks;
    this.lines = new Map(); // seq -> {line, element, cells, editing}
    this.order = [];
    this.current = null; // the line playing (or last played)
    this.now = null; // the cell being spoken
    this.picked = null; // {seq, word}: the word last clicked (a second click shows its meaning)
    this.scrolledAt = -Infinity; // when the reader last scrolled by hand
    this.lastChunk = -1; // the latest chunk_seq of the lines here (a live session's interim line waits for its own)
    this.interim = null; // {message, element}: a live session's line in progress, after the lines
    for (const name of ["wheel", "touchmove"]) {
      window.addEventListener(name, () => { this.scrolledAt = performance.now(); }, { passive: true });
    }
  }

  get(seq) {
    return this.lines.get(seq);
  }

  /** Adds new lines in order; a line already here is replaced only by a later revision. The new ones. */
  add(segments) {
    const fresh = [];
    for (const line of segments || []) {
      const known = this.lines.get(line.seq);
      if (known) {
        if ((line.revision ?? 0) > (known.line.revision ?? 0)) this.replace(line);
        continue;
      }
      const entry = { line, element: null, cells: [], editing: null };
      entry.element = this.lineElement(entry);
      const after = this.order.findLastIndex((seq) => seq < line.seq);
      const next = this.order[after + 1];
      this.list.insertBefore(entry.element, next === undefined ? null : this.lines.get(next).element);
      this.order.splice(after + 1, 0, line.seq);
      this.lines.set(line.seq, entry);
      this.lastChunk = Math.max(this.lastChunk, line.chunk_seq ?? -1);
      fresh.push(line);
    }
    if (this.interim && this.lastChunk >= this.interim.message.next_chunk) this.setInterim(null);
    return fresh;
  }

  /**
   * A live session's line in progress (an `interim` message), after the lines: its stable part, then its
   * tentative part greyed. Each replaces the one before; null, an empty one (silence), or its own line's
   * arrival takes it away. An interim older than the lines here is ignored.
   */
  setInterim(interim) {
    if (interim && interim.next_chunk <= this.lastChunk) return;
    if (!interim?.stable && !interim?.tentative) {
      this.interim?.element.remove();
      this.interim = null;
      return;
    }
    if (!this.interim) {
      const element = document.createElement("div");
      element.className = "line interim";
      element.innerHTML = '<div class="meta"><span class="time"></span><span class="live-tag">hearing…</span></div>'
        + '<span class="text" lang="yue-Hant"></span>';
      this.list.after(element);
      this.interim = { element };
    }
    this.interim.message = interim;
    this.fillInterim();
  }

  fillInterim() {
    const { message, element } = this.interim;
    element.querySelector(".time").textContent = clock(message.start);
    const stable = [...message.stable].length;
    const line = { text: message.stable + message.tentative, chars: message.chars, words: [] };
    const { fragment, cells } = renderLine(line, this.reading);
    for (const cell of cells) cell.element.classList.toggle("tentative", cell.first >= stable);
    element.querySelector(".text").replaceChildren(fragment);
    element.dataset.stable = message.stable;
    element.dataset.tentative = message.tentative;
  }

  /** A corrected line (from this window's save or a `revised` event) in place of the old one. */
  replace(line) {
    const entry = this.lines.get(line.seq);
    if (!entry) return this.add([line]);
    if ((line.revision ?? 0) < (entry.line.revision ?? 0)) return [];
    const before = entry.line;
    entry.line = line;
    this.fill(entry);
    if (entry.editing && line.text !== before.text) {
      entry.editing.revision = line.revision ?? 0;
      entry.editing.note.textContent = `Just corrected elsewhere; it now reads “${line.text}”. `
        + "Save to put yours in its place, or press Esc to keep it.";
    }
    return [line];
  }

  setReading(reading) {
    this.reading = reading;
    for (const entry of this.lines.values()) this.fill(entry);
    if (this.interim) this.fillInterim();
  }

  lineElement(entry) {
    const { line } = entry;
    const item = document.createElement("li");
    item.className = "line";
    item.dataset.seq = line.seq;
    const meta = document.createElement("div");
    meta.className = "meta";
    const time = document.createElement("button");
    time.type = "button";
    time.className = "time";
    time.addEventListener("click", () => this.hooks.seek(entry.line.seq, entry.line.start));
    const mark = document.createElement("span");
    mark.className = "corrected";
    mark.tabIndex = 0;
    meta.append(time, mark);
    const text = document.createElement("span");
    text.className = "text";
    text.lang = "yue-Hant";
    text.addEventListener("mousedown", (event) => { if (event.detail > 1) event.preventDefault(); });
    text.addEventListener("click", (event) => this.clicked(entry, event));
    const actions = document.createElement("div");
    actions.className = "actions";
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "edit";
    edit.textContent = "Edit";
    edit.addEventListener("click", () => this.edit(entry.line.seq));
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.addEventListener("click", () => {
      this.hooks.copy(copy, `${entry.line.text}\n${lineReading(entry.line, this.reading)}`.trim());
    });
    actions.append(edit, copy);
    item.append(meta, text, actions);
    entry.element = item;
    this.fill(entry);
    return item;
  }

  // The line's text, times and marks from entry.line (again after a reading change or a correction).
  fill(entry) {
    const { line, element } = entry;
    element.dataset.start = line.start;
    element.dataset.end = line.end;
    element.dataset.revision = line.revision ?? 0;
    const time = element.querySelector(".time");
    time.textContent = clock(line.start);
    time.setAttribute("aria-label", `Play from ${clock(line.start)}: ${line.text}`);
    const { fragment, cells } = renderLine(line, this.reading);
    element.querySelector(".text").replaceChildren(fragment);
    entry.cells = cells.filter((cell) => cell.start != null);
    entry.allCells = cells;
    const mark = element.querySelector(".corrected");
    const corrected = line.original_text != null;
    element.classList.toggle("is-corrected", corrected);
    mark.hidden = !corrected;
    mark.textContent = corrected ? "corrected" : "";
    if (corrected) {
      mark.title = `Corrected. The speech model wrote: ${line.original_text}`;
      mark.setAttribute("aria-label", `Corrected; the speech model wrote ${line.original_text}`);
    }
    element.querySelector(".edit").setAttribute("aria-label", `Correct line ${line.seq + 1}`);
    element.querySelector(".copy").setAttribute("aria-label", `Copy line ${line.seq + 1}`);
    if (this.now && this.now.seq === line.seq) this.now = null;
  }

  // Click a character: play from it. Click the same word again (or double-click): its meaning.
  clicked(entry, event) {
    const element = event.target.closest(".c");
    const seq = entry.line.seq;
    if (!element) {
      this.hooks.seek(seq, entry.line.start);
      return;
    }
    const cell = entry.allCells.find((c) => c.element === element);
    const word = cell.word ?? null;
    if (word != null && this.picked && this.picked.seq === seq && this.picked.word === word && this.hasMeaning(entry, word)) {
      this.hooks.meaning(seq, word, element);
      return;
    }
    this.picked = { seq, word };
    this.hooks.seek(seq, cell.start ?? entry.line.start);
  }

  /** Whether a word is worth looking up (not punctuation or a space). */
  hasMeaning(entry, word) {
    const text = entry.line.words?.[word]?.text || "";
    return LETTERS.test(text) && !PUNCTUATION_ONLY.test(text);
  }

  /** The words of a line that can be looked up, as indexes into line.words. */
  wordsOf(seq) {
    const entry = this.lines.get(seq);
    if (!entry) return [];
    return (entry.line.words || []).map((_, k) => k).filter((k) => this.hasMeaning(entry, k));
  }

  /** The first cell element of word `word` in line `seq`. */
  wordElement(seq, word) {
    const entry = this.lines.get(seq);
    return entry?.allCells.find((cell) => cell.word === word)?.element ?? null;
  }

  /** The word being played, or last clicked, or the current line's first: {seq, word}, or null. */
  activeWord() {
    if (this.now && this.now.word != null) return { seq: this.now.seq, word: this.now.word };
    if (this.picked && this.picked.word != null && this.picked.seq === this.current) return this.picked;
    const seq = this.current ?? this.order[0];
    const words = seq == null ? [] : this.wordsOf(seq);
    return words.length ? { seq, word: words[0] } : null;
  }

  // --- following playback ---------------------------------------------------------------------------

  /** The line playing at `time`: the last one that has started. */
  lineAt(time) {
    let [low, high] = [0, this.order.length]; // lines are in time order: the first that starts later
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.lines.get(this.order[middle]).line.start > time + 0.05) high = middle;
      else low = middle + 1;
    }
    return low ? this.order[low - 1] : null;
  }

  /** Highlight line `seq` and, within it, the character spoken at `time` (null: none). */
  follow(seq, time) {
    if (seq == null) return;
    if (seq !== this.current) this.markCurrent(seq);
    const entry = this.lines.get(seq);
    let cell = null;
    if (time != null && entry) {
      for (const candidate of entry.cells) {
        if (candidate.start > time + 0.01) break;
        cell = candidate;
      }
      if (cell && time > entry.line.end + 0.3) cell = null;
    }
    const element = cell ? cell.element : null;
    if (this.now?.element === element) return;
    this.now?.element.classList.remove("now");
    this.now = cell ? { seq, word: cell.word, element } : null;
    element?.classList.add("now");
  }

  markCurrent(seq) {
    const before = this.lines.get(this.current)?.element;
    before?.classList.remove("current");
    before?.removeAttribute("aria-current");
    if (this.current !== seq && this.picked?.seq !== seq) this.picked = null;
    this.current = seq;
    const entry = this.lines.get(seq);
    if (!entry) return;
    entry.element.classList.add("current");
    entry.element.setAttribute("aria-current", "true");
    this.keepInView(entry.element);
  }

  // The playing line in the upper third of what the sticky header leaves visible, unless the
  // reader has just scrolled away by hand.
  keepInView(element) {
    if (performance.now() - this.scrolledAt < 4000) return;
    const top = this.hooks.stickyBottom();
    const room = window.innerHeight - top;
    const rect = element.getBoundingClientRect();
    if (rect.top >= top && rect.top <= top + room / 3 && rect.bottom <= window.innerHeight) return;
    const calm = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    window.scrollBy({ top: rect.top - (top + room * 0.12), behavior: calm ? "auto" : "smooth" });
  }

  // --- correcting a line ------------------------------------------------------------------------------

  /** Open line `seq` for correcting: a text field with its text; Enter saves, Esc cancels. */
  edit(seq) {
    const entry = this.lines.get(seq);
    if (!entry) return;
    if (entry.editing) {
      entry.editing.field.focus();
      return;
    }
    const form = document.createElement("form");
    form.className = "editor";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.textContent = `Correct line ${seq + 1}`;
    const field = document.createElement("input");
    field.type = "text";
    field.className = "edit-field";
    field.lang = "yue-Hant";
    field.value = entry.line.text;
    field.id = `edit-${seq}`;
    label.htmlFor = field.id;
    field.autocomplete = "off";
    field.spellcheck = false;
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "save";
    save.textContent = "Save";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "cancel";
    cancel.textContent = "Cancel";
    const note = document.createElement("p");
    note.className = "edit-note";
    note.setAttribute("role", "status");
    note.textContent = "Enter saves, Esc cancels.";
    form.append(label, field, save, cancel, note);
    entry.editing = { form, field, note, revision: entry.line.revision ?? 0, busy: false };
    entry.element.classList.add("editing");
    entry.element.querySelector(".text").after(form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitEdit(entry);
    });
    cancel.addEventListener("click", () => this.closeEdit(entry));
    field.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        this.closeEdit(entry);
      }
    });
    field.focus();
    field.select();
  }

  closeEdit(entry, { focus = true } = {}) {
    if (!entry.editing) return;
    entry.editing.form.remove();
    entry.editing = null;
    entry.element.classList.remove("editing");
    if (focus) entry.element.querySelector(".edit").focus({ preventScroll: true });
  }

  async submitEdit(entry) {
    const editing = entry.editing;
    if (!editing || editing.busy) return;
    const text = editing.field.value.trim();
    if (text === entry.line.text && editing.revision === (entry.line.revision ?? 0)) {
      this.closeEdit(entry);
      return;
    }
    if (!text) {
      editing.note.textContent = "A line cannot be empty: type what you hear, or press Esc to keep the line.";
      return;
    }
    editing.busy = true;
    editing.note.textContent = "Saving…";
    const result = await this.hooks.save(entry.line.seq, text, editing.revision);
    editing.busy = false;
    if (entry.editing !== editing) return;
    if (result.segment) {
      this.closeEdit(entry);
      this.replace(result.segment);
      return;
    }
    if (result.conflict) {
      this.replace(result.conflict);
      editing.revision = result.conflict.revision ?? 0;
      editing.note.textContent = `Someone else corrected this line meanwhile; it now reads “${result.conflict.text}”. `
        + "Save again to put yours in its place, or press Esc to keep theirs.";
      return;
    }
    editing.note.textContent = result.message;
  }
}
