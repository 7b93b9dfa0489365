/** Where a sentence ends: CJK and Latin full stops, question and exclamation marks, semicolons, ellipses, lines. */
const SENTENCE_END = /[。！？!?；;…\n]/;
/** Where a sentence too long for one part may be cut when it must. */
const CLAUSE_END = /[，,、：:]/;
/** Closing quotes and brackets stay with the sentence they close. */
const CLOSER = /["'”’）)」』】》]/;
/** Something a voice can say: a letter or a digit of any script. */
const SPEAKABLE = /[\p{L}\p{N}]/u;

/**
 * Splits text into parts of at most `maxChars` characters, cut at sentence ends where it can
 * (heygem-tts-contract.md: the server answers 400 for text over its `max_text_length`). A sentence
 * longer than that is cut at clause marks, then spaces, then anywhere. Parts with nothing to say
 * (punctuation alone) are dropped, so an empty list means the text is unspeakable.
 */
export function splitText(text: string, maxChars: number): string[] {
  if (!Number.isInteger(maxChars) || maxChars < 1)
    throw new RangeError(`maxChars must be ≥ 1, got ${maxChars}`);
  const parts: string[] = [];
  let current = "";
  const flush = () => {
    const part = current.trim();
    if (SPEAKABLE.test(part)) parts.push(part);
    current = "";
  };
  for (const sentence of sentences(text)) {
    for (const piece of cutLong(sentence, maxChars)) {
      if ([...current].length + [...piece].length > maxChars) flush();
      current += piece;
    }
  }
  flush();
  return parts;
}

function sentences(text: string): string[] {
  const chars = [...text.replace(/\r\n?/g, "\n")];
  const out: string[] = [];
  let current = "";
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i] ?? "";
    current += ch;
    const next = chars[i + 1];
    // A Latin full stop ends a sentence before a space or the end, not inside 3.14 or e.g.x
    const ends = SENTENCE_END.test(ch) || (ch === "." && (next === undefined || /\s/.test(next)));
    if (!ends) continue;
    while (
      chars[i + 1] !== undefined &&
      (CLOSER.test(chars[i + 1] ?? "") || SENTENCE_END.test(chars[i + 1] ?? ""))
    ) {
      current += chars[++i];
    }
    out.push(current);
    current = "";
  }
  if (current !== "") out.push(current);
  return out;
}

function cutLong(sentence: string, maxChars: number): string[] {
  const chars = [...sentence];
  if (chars.length <= maxChars) return [sentence];
  const out: string[] = [];
  let start = 0;
  while (chars.length - start > maxChars) {
    const window = chars.slice(start, start + maxChars);
    let cut = lastIndex(window, (c) => CLAUSE_END.test(c));
    if (cut < maxChars / 3) cut = lastIndex(window, (c) => /\s/.test(c));
    if (cut < maxChars / 3) cut = maxChars - 1;
    out.push(chars.slice(start, start + cut + 1).join(""));
    start += cut + 1;
  }
  out.push(chars.slice(start).join(""));
  return out;
}

function lastIndex(chars: string[], test: (c: string) => boolean): number {
  for (let i = chars.length - 1; i >= 0; i--) if (test(chars[i] ?? "")) return i;
  return -1;
}
