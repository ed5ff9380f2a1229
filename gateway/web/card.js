// The meaning card: a word of the transcript with its readings in context and its English
// definitions from GET /v1/dictionary (with the API key when signed in: under accounts it needs one).
// A dialog that takes focus; Esc or a click elsewhere closes it, ← → go to the word before or after
// in the line. On a phone it sits at the bottom of the screen.

import { apiFetch } from "./auth.js";

const MAX_DEFINITIONS = 6;
const SIGN_IN = "Meanings need signing in: sign in with your API key on the start page, then open this page again.";

export class Card {
  /**
   * @param {HTMLElement} box the #card element
   * @param {object} hooks
   *   words(seq): the line's words that can be looked up (indexes);
   *   word(seq, word): {text, jyutping, yale} of that word;
   *   element(seq, word): where that word is on the page;
   *   play(seq, word): play from that word.
   */
  constructor(box, hooks) {
    this.box = box;
    this.hooks = hooks;
    this.at = null; // {seq, word}
    this.returnFocus = null;
    this.asked = 0; // the latest lookup: an older answer arriving late is dropped
    this.cache = new Map();
    box.addEventListener("keydown", (event) => this.key(event));
    document.addEventListener("pointerdown", (event) => {
      if (!box.hidden && !box.contains(event.target)) this.close();
    });
    window.addEventListener("resize", () => this.place());
  }

  get open() {
    return !this.box.hidden;
  }

  show(seq, word) {
    const entry = this.hooks.word(seq, word);
    const anchor = this.hooks.element(seq, word);
    if (!entry || !anchor) return;
    if (!this.open) this.returnFocus = document.activeElement;
    this.at = { seq, word };
    this.anchor = anchor;
    this.box.replaceChildren(this.head(entry), this.body("Looking it up…"), this.actions());
    this.box.hidden = false;
    this.place();
    this.box.focus({ preventScroll: true });
    this.lookUp(entry.text);
  }

  close() {
    if (!this.open) return;
    this.box.hidden = true;
    this.at = null;
    const back = this.returnFocus;
    this.returnFocus = null;
    if (back && back.isConnected && back !== document.body) back.focus({ preventScroll: true });
  }

  head(entry) {
    const head = document.createElement("div");
    head.className = "card-head";
    const word = document.createElement("span");
    word.id = "card-word";
    word.className = "card-word";
    word.lang = "yue-Hant";
    word.textContent = entry.text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "card-close";
    close.setAttribute("aria-label", "Close the meaning");
    close.textContent = "×";
    close.addEventListener("click", () => this.close());
    const readings = document.createElement("p");
    readings.className = "card-readings";
    if (entry.jyutping) readings.append(reading("Jyutping", entry.jyutping));
    if (entry.yale) readings.append(reading("Yale", entry.yale));
    head.append(word, close, readings);
    return head;
  }

  body(message) {
    const body = document.createElement("div");
    body.className = "card-body";
    body.setAttribute("aria-live", "polite");
    const text = document.createElement("p");
    text.className = "card-message";
    text.textContent = message;
    body.append(text);
    return body;
  }

  actions() {
    const actions = document.createElement("div");
    actions.className = "card-actions";
    const play = document.createElement("button");
    play.type = "button";
    play.className = "card-play";
    play.textContent = "▶ Play from here";
    play.addEventListener("click", () => {
      const { seq, word } = this.at;
      this.close();
      this.hooks.play(seq, word);
    });
    const hint = document.createElement("span");
    hint.className = "card-hint";
    hint.textContent = "← → other words · Esc closes";
    actions.append(play, hint);
    return actions;
  }

  async lookUp(text) {
    const asked = ++this.asked;
    let answer = this.cache.get(text);
    if (!answer) {
      try {
        const response = await apiFetch(`/v1/dictionary?q=${encodeURIComponent(text)}`);
        const body = await response.json().catch(() => null);
        answer = { ok: response.ok, body, status: response.status };
        if (response.ok || body?.error?.code === "no_entry") this.cache.set(text, answer);
      } catch {
        answer = { ok: false, body: null, status: 0 };
      }
    }
    if (asked !== this.asked || !this.open) return;
    const body = this.box.querySelector(".card-body");
    body.replaceChildren(...this.meanings(answer));
    this.place();
  }

  meanings({ ok, body, status }) {
    const out = [];
    const say = (text, className = "card-message") => {
      const p = document.createElement("p");
      p.className = className;
      p.textContent = text;
      out.push(p);
    };
    if (!ok) {
      if (status === 401) say(SIGN_IN);
      else if (body?.error?.message && status < 500) say(body.error.message);
      else say("The dictionary could not be reached just now. Try again in a moment.");
      return out;
    }
    if (body.message) say(body.message, "card-note");
    const list = document.createElement("ol");
    list.className = "entries";
    for (const entry of body.entries || []) {
      const item = document.createElement("li");
      const head = document.createElement("p");
      head.className = "entry-head";
      const word = document.createElement("span");
      word.lang = "yue-Hant";
      word.className = "entry-word";
      word.textContent = entry.simplified && entry.simplified !== entry.traditional
        ? `${entry.traditional} (${entry.simplified})` : entry.traditional;
      head.append(word);
      // The entry's readings, unless they are the ones the card opens with (the word as read in the line).
      const shown = this.hooks.word(this.at.seq, this.at.word);
      if (entry.jyutping && entry.jyutping !== shown?.jyutping) {
        for (const [name, value] of [["Jyutping", entry.jyutping], ["Yale", entry.yale]]) {
          if (value) head.append(" ", reading(name, value));
        }
      }
      const definitions = document.createElement("ol");
      definitions.className = "definitions";
      for (const definition of (entry.definitions || []).slice(0, MAX_DEFINITIONS)) {
        const li = document.createElement("li");
        li.textContent = definition;
        definitions.append(li);
      }
      const source = document.createElement("p");
      source.className = "entry-source";
      source.textContent = entry.source || "";
      item.append(head, definitions, source);
      list.append(item);
    }
    if (list.children.length) out.push(list);
    else if (!body.message) say("The dictionary has nothing for this word.");
    return out;
  }

  // Below the word (above it when there is no room); on a phone, CSS puts the card at the bottom.
  place() {
    if (!this.open || !this.anchor?.isConnected) return;
    const style = this.box.style;
    if (window.matchMedia("(max-width: 40rem)").matches) {
      style.left = style.top = "";
      return;
    }
    const rect = this.anchor.getBoundingClientRect();
    const width = this.box.offsetWidth;
    const height = this.box.offsetHeight;
    const left = Math.min(Math.max(8, rect.left + rect.width / 2 - width / 2), window.innerWidth - width - 8);
    const below = rect.bottom + 8;
    const top = below + height > window.innerHeight && rect.top - height - 8 > 0 ? rect.top - height - 8 : below;
    style.left = `${left + window.scrollX}px`;
    style.top = `${top + window.scrollY}px`;
  }

  key(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.close();
    } else if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && this.at) {
      event.preventDefault();
      const words = this.hooks.words(this.at.seq);
      const next = words[words.indexOf(this.at.word) + (event.key === "ArrowLeft" ? -1 : 1)];
      if (next !== undefined) this.show(this.at.seq, next);
    }
  }
}

function reading(name, value) {
  const span = document.createElement("span");
  span.className = "card-reading";
  const label = document.createElement("span");
  label.className = "reading-name";
  label.textContent = `${name} `;
  const text = document.createElement("span");
  text.lang = "yue-Latn";
  text.textContent = value;
  span.append(label, text);
  return span;
}
