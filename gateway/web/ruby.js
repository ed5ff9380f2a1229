// A transcript line as cells: each character (or a whole number) with its reading above it, the
// time it is spoken, the word it belongs to and how sure the speech model was of that word.

export const READINGS = ["jyutping", "yale", "yale_numeric", "none"];

/** Below this confidence (0-1) a word is marked as uncertain. One constant: change it here. */
export const UNSURE_BELOW = 0.4;

const DIGIT = /^[0-9０-９]$/u;
const PUNCTUATION = /^[\p{P}\p{S}]+$/u;

/** The reading of one character entry in the chosen system, or null. */
export function readingOf(entry, mode) {
  if (mode === "none") return null;
  return entry[mode] ?? null;
}

/** The tone (1-6) of a Jyutping syllable (the first of several), or 0. */
export function toneOf(jyutping) {
  const match = /([1-6])(?:\s|$)/.exec(jyutping || "");
  return match ? Number(match[1]) : 0;
}

/** The index into `line.words` of each character, or null when the words do not spell the line. */
export function wordOfChar(line) {
  const owner = [];
  (line.words || []).forEach((word, index) => {
    for (const _ of word.text) owner.push(index);
  });
  return owner.length === (line.chars || []).length ? owner : null;
}

/**
 * The line's cells: a character with a reading and any unread characters of its word after it (a
 * number such as 1.3% is one cell, its whole reading on its first digit), or a run of unread
 * characters of one word (Latin, punctuation). Each: {first, count, base, entry, word, start, end,
 * confidence}, times and confidence null where unknown.
 */
export function cells(line) {
  const chars = line.chars && line.chars.length ? line.chars : fromWords(line);
  const owner = line.chars && line.chars.length ? wordOfChar(line) : chars.map((_, i) => i);
  const sameWord = (i, j) => (owner ? owner[i] === owner[j] : DIGIT.test(chars[j].char));
  const out = [];
  for (let i = 0; i < chars.length;) {
    const read = chars[i].jyutping != null;
    let j = i + 1;
    while (j < chars.length && chars[j].jyutping == null && sameWord(i, j)
           && (read || !PUNCTUATION.test(chars[j].char)) && !PUNCTUATION.test(chars[i].char)) {
      j += 1;
    }
    const span = chars.slice(i, j);
    const times = span.filter((c) => c.start != null && c.end != null);
    const sure = span.map((c) => c.confidence).filter((c) => c != null);
    out.push({
      first: i,
      count: j - i,
      base: span.map((c) => c.char).join(""),
      entry: chars[i],
      word: owner ? owner[i] : null,
      start: times.length ? times[0].start : null,
      end: times.length ? times[times.length - 1].end : null,
      confidence: sure.length ? Math.min(...sure) : null,
    });
    i = j;
  }
  return out;
}

// Lines from before per-character readings: a reading over each word instead.
function fromWords(line) {
  if (!line.words || !line.words.length) return [...line.text].map((char) => ({ char, jyutping: null }));
  return line.words.map((word) => ({
    char: word.text, jyutping: word.jyutping, yale: word.yale, yale_numeric: word.jyutping,
  }));
}

/**
 * The line as DOM nodes, and its cells with their elements ({...cell, element}). A cell with a
 * reading is a <ruby> (a <span> when readings are off), the rest <span class="plain">; each has
 * data-i (its first character) and data-w (its word). Punctuation stays on the line of the
 * character before it, as in print.
 */
export function renderLine(line, mode) {
  const fragment = document.createDocumentFragment();
  const rendered = [];
  for (const cell of cells(line)) {
    const element = cellElement(cell, mode);
    rendered.push({ ...cell, element });
    const before = fragment.lastChild;
    if (cell.entry.jyutping == null && PUNCTUATION.test(cell.base) && before && before.nodeType === Node.ELEMENT_NODE) {
      const glued = document.createElement("span");
      glued.className = "nobr";
      glued.append(before, element);
      fragment.append(glued);
    } else {
      fragment.append(element);
    }
  }
  return { fragment, cells: rendered };
}

function cellElement(cell, mode) {
  const read = cell.entry.jyutping != null;
  const reading = readingOf(cell.entry, mode);
  const element = document.createElement(reading ? "ruby" : "span");
  element.className = read ? "c" : "c plain";
  element.dataset.i = cell.first;
  if (cell.count > 1) element.dataset.n = cell.count;
  if (cell.word != null) element.dataset.w = cell.word;
  if (cell.start != null) element.dataset.start = cell.start;
  if (cell.confidence != null) {
    element.dataset.confidence = cell.confidence;
    if (cell.confidence < UNSURE_BELOW) element.classList.add("unsure");
  }
  const syllables = (cell.entry.jyutping || "").split(/\s+/).filter(Boolean);
  if (syllables.length === 1) element.classList.add(`tone-${toneOf(syllables[0])}`);
  const base = document.createElement("span");
  base.className = "rb";
  base.textContent = cell.base;
  element.append(base);
  if (reading) {
    const rt = document.createElement("rt");
    rt.lang = "yue-Latn";
    const parts = reading.split(/\s+/);
    if (syllables.length > 1 && parts.length === syllables.length) {
      // A number's reading: each syllable in its own tone's colour, the digits in ink.
      rt.className = "multi";
      parts.forEach((part, k) => {
        if (k) rt.append(" ");
        const syllable = document.createElement("span");
        syllable.className = `tone-${toneOf(syllables[k])}`;
        syllable.textContent = part;
        rt.append(syllable);
      });
    } else {
      rt.textContent = reading;
    }
    element.append(rt);
  }
  return element;
}

/** The whole line's reading as text (for copying), in the chosen system. */
export function lineReading(line, mode) {
  if (mode === "none") return "";
  return cells(line).map((cell) => readingOf(cell.entry, mode)).filter(Boolean).join(" ");
}
