// @ts-check
// Text chat during the call, for when the sound fails or a link must be shared. Lines go
// over the signalling connection as `chat` messages (docs/PROTOCOL.md); nothing is stored
// anywhere — not on the server, not in the browser — and the log is cleared when the
// session ends. Every line is put on the page with textContent, never as markup.

import { formatTime } from "./ui.js";

/** @typedef {import("./protocol.js").SignallingConnection} SignallingConnection */
/** @typedef {import("./protocol.js").ChatMessage} ChatMessage */
/** @typedef {import("./protocol.js").ErrorMessage} ErrorMessage */

export const MAX_CHAT_LENGTH = 2000;

/**
 * @typedef {object} ChatElements
 * @property {HTMLElement} panel          the chat panel, shown while `data-open="true"`
 * @property {HTMLElement} log           role="log": one element per line
 * @property {HTMLFormElement} form
 * @property {HTMLInputElement | HTMLTextAreaElement} input
 * @property {HTMLButtonElement} toggle   shows and hides the panel (aria-expanded)
 * @property {HTMLElement} unread         the unread count inside the toggle
 */
/**
 * @typedef {object} ChatStrings
 * @property {string} you            "You"
 * @property {string} them           the other person's label ("Your therapist", the client's name)
 * @property {string} notDelivered   "Not delivered — the other person is not connected"
 * @property {string} unread         "{count} unread" (for screen readers)
 */

export class ChatPanel {
  #connection;
  #el;
  #strings;
  /** Our lines still waiting to be confirmed or refused, by message id. @type {Map<string, HTMLElement>} */
  #pending = new Map();
  #unread = 0;

  /**
   * @param {SignallingConnection} connection
   * @param {ChatElements} elements
   * @param {ChatStrings} strings
   */
  constructor(connection, elements, strings) {
    this.#connection = connection;
    this.#el = elements;
    this.#strings = strings;
    elements.input.maxLength = MAX_CHAT_LENGTH;
    elements.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send(elements.input.value);
    });
    elements.toggle.addEventListener("click", () => this.setOpen(elements.toggle.getAttribute("aria-expanded") !== "true"));
    connection.addEventListener("chat", (event) => {
      this.#add("them", /** @type {CustomEvent<ChatMessage>} */ (event).detail.text);
    });
    connection.addEventListener("error", (event) => {
      const error = /** @type {CustomEvent<ErrorMessage>} */ (event).detail;
      const line = error.id ? this.#pending.get(error.id) : undefined;
      if (!line) return;
      this.#pending.delete(/** @type {string} */ (error.id));
      if (error.error === "conflict" || error.error === "not-admitted" || error.error === "rate-limited") {
        this.#markUndelivered(line);
      }
    });
  }

  /**
   * Send one line; blank lines are ignored. A line that could not even be sent (no
   * connection) is shown as not delivered at once.
   * @param {string} text
   */
  send(text) {
    const trimmed = text.trim().slice(0, MAX_CHAT_LENGTH);
    if (!trimmed) return;
    const line = this.#add("you", trimmed);
    const id = this.#connection.request({ type: "chat", text: trimmed });
    if (id) this.#pending.set(id, line);
    else this.#markUndelivered(line);
    this.#el.input.value = "";
    // Old ids can no longer be answered; keep the map small.
    if (this.#pending.size > 50) {
      const oldest = this.#pending.keys().next().value;
      if (oldest !== undefined) this.#pending.delete(oldest);
    }
  }

  /** @param {boolean} open */
  setOpen(open) {
    this.#el.toggle.setAttribute("aria-expanded", open ? "true" : "false");
    this.#el.panel.dataset.open = open ? "true" : "false";
    if (open) {
      this.#setUnread(0);
      this.#el.input.focus();
    }
  }

  /** Forget every line: the session is over. */
  clear() {
    this.#el.log.replaceChildren();
    this.#pending.clear();
    this.#el.input.value = "";
    this.#setUnread(0);
  }

  /**
   * @param {"you" | "them"} who
   * @param {string} text
   */
  #add(who, text) {
    const item = document.createElement("div");
    item.className = `chat-line chat-${who}`;
    const meta = document.createElement("span");
    meta.className = "chat-meta";
    const name = document.createElement("span");
    name.className = "chat-who";
    name.textContent = who === "you" ? this.#strings.you : this.#strings.them;
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = formatTime(now);
    meta.append(name, " ", time);
    const body = document.createElement("span");
    body.className = "chat-text";
    body.textContent = text;
    item.append(meta, body);
    this.#el.log.append(item);
    // Scroll the log, not the page: the video stays where it is.
    this.#el.log.scrollTop = this.#el.log.scrollHeight;
    if (who === "them" && !this.#isVisible()) this.#setUnread(this.#unread + 1);
    return item;
  }

  /** @param {HTMLElement} line */
  #markUndelivered(line) {
    line.classList.add("chat-undelivered");
    const note = document.createElement("span");
    note.className = "chat-note";
    note.textContent = this.#strings.notDelivered;
    line.append(note);
  }

  /** Whether the log can be seen (the panel is open and the page in front). */
  #isVisible() {
    return this.#el.panel.dataset.open === "true" && document.visibilityState === "visible";
  }

  /**
   * The unread count on the toggle: a number to see, and words for screen readers.
   * @param {number} count
   */
  #setUnread(count) {
    this.#unread = count;
    this.#el.unread.hidden = count === 0;
    if (!count) {
      this.#el.unread.replaceChildren();
      return;
    }
    const shown = document.createElement("span");
    shown.setAttribute("aria-hidden", "true");
    shown.textContent = String(count);
    const spoken = document.createElement("span");
    spoken.className = "visually-hidden";
    spoken.textContent = this.#strings.unread.replace("{count}", String(count));
    this.#el.unread.replaceChildren(shown, spoken);
  }
}
