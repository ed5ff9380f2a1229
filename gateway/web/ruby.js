// A transcript line as ruby: each character with its reading above it, from the line's `chars`
// (one entry per character; a number's whole reading sits on its first digit, then null).

export const READINGS = ["jyutping", "yale", "yale_numeric", "none"];

const DIGIT = /^[0-9０-９]$/u;

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

/** Groups of characters: a reading with the characters it covers (a number's digits), or plain text. */
export function runs(line, mode) {
  const chars = line.chars && line.chars.length ? line.chars : fromWords(line);
  const out = [];
  for (let i = 0; i < chars.length; i++) {
    const entry = chars[i];
    const reading = readingOf(entry, mode);
    if (reading) {
      let base = entry.char;
      while (DIGIT.test(entry.char) && i + 1 < chars.length && chars[i + 1].jyutping == null
             && DIGIT.test(chars[i + 1].char)) {
        base += chars[++i].char;
      }
      out.push({ base, reading, tone: toneOf(entry.jyutping) });
    } else if (out.length && out[out.length - 1].reading == null) {
      out[out.length - 1].base += entry.char;
    } else {
      out.push({ base: entry.char, reading: null, tone: 0 });
    }
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

/** The line's text as DOM nodes: <ruby> for characters with a reading, text for the rest. */
export function renderLine(line, mode) {
  const fragment = document.createDocumentFragment();
  for (const run of runs(line, mode)) {
    if (run.reading == null) {
      // Punctuation stays on the line of the character before it, as in print.
      const [, stuck, rest] = /^(\p{P}*)([\s\S]*)$/u.exec(run.base);
      const before = fragment.lastChild;
      if (stuck && before && before.nodeName === "RUBY") {
        const glued = document.createElement("span");
        glued.className = "nobr";
        glued.append(before, stuck);
        fragment.append(glued);
      } else if (stuck) {
        fragment.append(stuck);
      }
      if (rest) fragment.append(rest);
      continue;
    }
    const ruby = document.createElement("ruby");
    if (run.tone) ruby.className = `tone-${run.tone}`;
    const rt = document.createElement("rt");
    rt.textContent = run.reading;
    ruby.append(run.base, rt);
    fragment.append(ruby);
  }
  return fragment;
}

/** The whole line's reading as text (for copying), in the chosen system. */
export function lineReading(line, mode) {
  if (mode === "none") return "";
  return runs(line, mode).filter((run) => run.reading).map((run) => run.reading).join(" ");
}
