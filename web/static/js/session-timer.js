// @ts-check
// How long the session has been going, and when it is due to end ("Ends at 3:50 PM", in
// the viewer's own time zone), with a gentle highlight in its last five minutes so neither
// person is surprised by the end.

import { fill, formatTime } from "./ui.js";

/** The highlight starts this long before the scheduled end. */
export const ENDING_SOON_MS = 5 * 60_000;

/**
 * "12:05" (minutes and seconds), or "1:02:05" past an hour.
 * @param {number} ms
 */
export function formatElapsed(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const two = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return hours ? `${hours}:${two(minutes)}:${two(seconds)}` : `${minutes}:${two(seconds)}`;
}

/**
 * Whether the session is in its last five minutes (or past its end).
 * @param {number} now
 * @param {number} end
 */
export function isEndingSoon(now, end) {
  return Number.isFinite(end) && end - now <= ENDING_SOON_MS;
}

export class SessionTimer {
  #elapsed;
  #ends;
  #root;
  #end;
  #labelElapsed;
  /** When the call began on this page (0: not yet). */
  #startedAt = 0;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #timer;

  /**
   * @param {object} options
   * @param {HTMLElement} options.root       gets `data-ending="true"` in the last five minutes
   * @param {HTMLElement} options.elapsed    the elapsed time
   * @param {HTMLElement} options.ends       "Ends at {time}"
   * @param {string} options.end             the scheduled end, an ISO-8601 instant
   * @param {string} options.endsAt          "Ends at {time}"
   * @param {string} options.labelElapsed    "Elapsed {time}" (for screen readers)
   */
  constructor({ root, elapsed, ends, end, endsAt, labelElapsed }) {
    this.#root = root;
    this.#elapsed = elapsed;
    this.#ends = ends;
    this.#end = Date.parse(end);
    this.#labelElapsed = labelElapsed;
    this.#ends.textContent = Number.isFinite(this.#end) ? fill(endsAt, { time: formatTime(new Date(this.#end)) }) : "";
  }

  /** Start counting (once: a reconnect does not reset it). */
  start() {
    if (!this.#startedAt) this.#startedAt = Date.now();
    if (this.#timer === undefined) this.#timer = setInterval(() => this.#render(), 1000);
    this.#root.hidden = false;
    this.#render();
  }

  /** Stop counting: the session is over. */
  stop() {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#startedAt = 0;
    this.#root.hidden = true;
  }

  #render() {
    const now = Date.now();
    const text = formatElapsed(now - this.#startedAt);
    if (this.#elapsed.textContent !== text) {
      this.#elapsed.textContent = text;
      this.#elapsed.setAttribute("title", fill(this.#labelElapsed, { time: text }));
    }
    const ending = isEndingSoon(now, this.#end);
    if ((this.#root.dataset.ending === "true") !== ending) this.#root.dataset.ending = ending ? "true" : "false";
  }
}
