// @ts-check
// A live worksheet (the `worksheet`, `yjs`, `editing` and `worksheet-closed` messages of
// docs/PROTOCOL.md), shown in one element: the call pages and the homework page mount one each.
//
// WorksheetPanel owns the Yjs document of the open worksheet and speaks the sync protocol
// through the `send` function it is given; it never opens a socket itself. Documents are kept
// per worksheet id for the life of the page, so a worksheet reopened after a reconnect (the
// server sends `worksheet` again) keeps what was typed offline, and the sync step 1/2 exchange
// merges it. Until the server's sync step 2 has arrived nothing can be typed: a browser must
// never create the document's entries itself (docs/WORKSHEETS.md "Documents").
//
// What the server has not stored yet is also kept in the tab (worksheet-keep.js) until the
// status says "Saved": a page that is reloaded or discarded meanwhile brings it back, on top of
// the server's copy, once that has arrived.

import * as Y from "../vendor/yjs.js";
import { STEP1, STEP2, UPDATE, encodeData, packUpdates, receiveSync, syncStep1 } from "./worksheet-sync.js";
import { UnsavedEdits, tabStorage } from "./worksheet-keep.js";
import { make } from "./worksheet-dom.js";
import { renderForm } from "./worksheet-fields.js";
import { captureCaret, restoreCaret } from "./worksheet-text.js";

/** @typedef {import("./worksheet-dom.js").Template} Template */
/** @typedef {import("./worksheet-dom.js").Strings} Strings */
/** @typedef {import("./worksheet-dom.js").Binding} Binding */
/** @typedef {import("./worksheet-text.js").TextBinding} TextBinding */
/** @typedef {{type: "worksheet", worksheet: string, title: string, template: Template}} WorksheetMessage */
/** @typedef {{type: "worksheet-closed", worksheet: string}} WorksheetClosedMessage */
/** @typedef {{type: "yjs", worksheet: string, data: string}} YjsMessage */
/** @typedef {{type: "editing", worksheet: string, field: string | null}} EditingMessage */
/** @typedef {{type: "worksheet-saved", worksheet: string, revision: number, received?: number}} WorksheetSavedMessage */
/** @typedef {{type: "error", error: string, value: string}} WorksheetErrorMessage */
/**
 * @typedef {WorksheetMessage | WorksheetClosedMessage | YjsMessage | EditingMessage
 *   | WorksheetSavedMessage | WorksheetErrorMessage} WorksheetIncoming
 */
/**
 * What the page hears about: `loading` until the server's copy has arrived, `offline` while
 * changes cannot be sent, `saving` from a change until the server says it stored everything
 * it had (`worksheet-saved`), `saved` otherwise, `closed`.
 * @typedef {"closed" | "loading" | "offline" | "saving" | "saved"} PanelStatus
 */
/**
 * A worksheet's document; `unsaved`: the local changes since the status was last "Saved";
 * `restored`: changes kept in the tab by an earlier page, applied once the server's copy is in.
 * @typedef {{doc: Y.Doc, synced: boolean, localUpdates: Uint8Array[], unsaved: Uint8Array[],
 *   restored: Uint8Array | null}} DocRecord
 */

/** Marks changes that came from the other side, so they are not sent back. */
const REMOTE = Symbol("remote");
/** Marks changes brought back from the tab's storage: they are ours, and sent like typing. */
const RESTORED = Symbol("restored");
/** Local changes wait this long to be merged into one message (the server allows 20/s). */
const COALESCE_MS = 60;
/** A refused change is explained for at least this long. */
const NOTICE_MS = 8000;
/**
 * After the server dropped a change as too fast (`rate-limited`: a socket that stalled, then
 * let out everything it held at once), our changes are sent again this much later.
 */
const RESEND_MS = 1000;
let panels = 0;

/**
 * @param {unknown} strings  a lookup like ui.js `stringsFrom`, or a plain object of texts
 * @returns {Strings}
 */
function lookup(strings) {
  if (typeof strings === "function") return /** @type {Strings} */ (strings);
  const table = /** @type {Record<string, string>} */ (strings && typeof strings === "object" ? strings : {});
  return (key, fallback, values) => {
    const text = table[key] || fallback;
    return values ? text.replace(/\{(\w+)\}/g, (match, name) => (name in values ? values[name] : match)) : text;
  };
}

/**
 * Events: `status` (`detail.status`: {@link PanelStatus}), `open` (`detail.worksheet`,
 * `detail.title`), `close` (`detail.worksheet`).
 */
export class WorksheetPanel extends EventTarget {
  #root;
  #send;
  #buffered;
  #t;
  #prefix;
  #nextId = 0;
  /** @type {Map<string, DocRecord>} */
  #docs = new Map();
  /** @type {string | null} */
  #id = null;
  /** @type {DocRecord | null} */
  #record = null;
  /** @type {Binding[]} */
  #bindings = [];
  /** @type {WeakMap<Element, TextBinding>} */
  #texts = new WeakMap();
  /** @type {Uint8Array[]} */
  #queue = [];
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #resendTimer;
  #connected = true;
  /** Some change could not be sent; the next sync step 2 we send carries it. */
  #unsent = false;
  /** Changes were sent since the server last said it had stored everything. */
  #unacknowledged = false;
  /** `yjs` messages sent for the open worksheet on this connection (docs/PROTOCOL.md). */
  #posted = 0;
  /** The count of those a `worksheet-saved` must cover (`received`) to cover our changes. */
  #needed = 0;
  #refusedAt = 0;
  /** @type {PanelStatus} */
  #status = "closed";
  /** Where the other person is. @type {string | null} */
  #peerField = null;
  /** Where we told the other person we are. @type {string | null} */
  #ownField = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #blurTimer;
  /** @type {HTMLElement | null} */
  #message = null;
  /** @type {HTMLFieldSetElement | null} */
  #form = null;
  /** @type {() => void} */
  #unobserve = () => {};
  #kept;

  /**
   * @param {HTMLElement} root  emptied and filled by the panel
   * @param {{send: (message: object) => unknown, buffered?: () => number, strings?: unknown,
   *   storage?: Storage | null}} options  `send` returns false when the message could not be
   *   sent (as SignallingConnection.send does); `buffered` tells how many bytes the socket
   *   still holds unsent (its `bufferedAmount`): while it holds some, typing waits and is
   *   merged, rather than piling up behind a stalled network; `storage` keeps unsaved changes
   *   (the tab's sessionStorage by default; null keeps nothing)
   */
  constructor(root, { send, buffered = () => 0, strings, storage = tabStorage() }) {
    super();
    this.#root = root;
    this.#send = send;
    this.#buffered = buffered;
    this.#t = lookup(strings);
    this.#kept = new UnsavedEdits(storage);
    // The last keystrokes may still wait to be merged when the page goes away.
    globalThis.addEventListener("pagehide", () => this.#keepUnsaved());
    this.#prefix = `ws${++panels}`;
    root.classList.add("worksheet-panel");
    root.dataset.state = "closed";
    root.addEventListener("focusin", (event) => this.#focusMoved(event.target));
    root.addEventListener("focusout", () => {
      clearTimeout(this.#blurTimer);
      this.#blurTimer = setTimeout(() => this.#focusMoved(document.activeElement), 0);
    });
  }

  /** The open worksheet's id, or null. */
  get worksheet() {
    return this.#id;
  }

  /** @returns {PanelStatus} */
  get status() {
    return this.#status;
  }

  /** The open document (for the page's tests and tools), or null. */
  get doc() {
    return this.#record ? this.#record.doc : null;
  }

  /**
   * Show a worksheet (a `worksheet` message). The same id again, as after a reconnect, keeps
   * the form and the document and only syncs again.
   * @param {WorksheetMessage} message
   */
  open(message) {
    if (this.#id === message.worksheet && this.#record) {
      this.resync();
      return;
    }
    if (this.#id) this.close();
    this.#id = message.worksheet;
    this.#render(message);
    this.#use(this.#docs.get(message.worksheet) || this.#newRecord(message.worksheet));
    this.dispatchEvent(new CustomEvent("open", { detail: { worksheet: message.worksheet, title: message.title } }));
    this.resync();
  }

  /**
   * Handle a message for worksheets: `worksheet`, `yjs`, `editing`, `worksheet-closed`, or an
   * `error` (only `worksheet-refused` concerns the panel). Others are ignored.
   * @param {WorksheetIncoming} message
   */
  receive(message) {
    switch (message.type) {
      case "worksheet":
        this.open(message);
        break;
      case "worksheet-closed":
        if (message.worksheet === this.#id) this.close();
        break;
      case "yjs":
        if (message.worksheet === this.#id) this.#receiveSync(message.data);
        break;
      case "worksheet-saved":
        // A save that began while our last change was on its way does not cover it: the
        // next one will.
        if (message.worksheet === this.#id && !(typeof message.received === "number" && message.received < this.#needed)) {
          this.#unacknowledged = false;
          this.#updateStatus();
        }
        break;
      case "editing":
        if (message.worksheet === this.#id) {
          this.#peerField = typeof message.field === "string" ? message.field : null;
          this.#showPeer();
        }
        break;
      case "error":
        if (message.error === "worksheet-refused" && this.#id) this.#reload(message.value);
        else if (message.error === "rate-limited" && this.#id) this.#resendLater();
        break;
    }
  }

  /** Send sync step 1 again (after a reconnect); the server's step 2 brings what we missed. */
  resync() {
    if (!this.#id || !this.#record) return;
    this.#flush();
    if (this.#post({ type: "yjs", worksheet: this.#id, data: syncStep1(this.#record.doc) })) this.#connected = true;
    if (this.#ownField) this.#post({ type: "editing", worksheet: this.#id, field: this.#ownField });
    this.#updateStatus();
  }

  /**
   * Tell the panel whether its socket is up (it also notices when a send fails).
   * @param {boolean} connected
   */
  setConnected(connected) {
    this.#connected = connected;
    if (!connected) {
      this.#peerField = null;
      this.#restartCount(); // the server counts what the next connection sends afresh
    }
    this.#showPeer();
    this.#updateStatus();
  }

  /** Stop showing the worksheet. Its document is kept in case it is opened again. */
  close() {
    const id = this.#id;
    if (!id) return;
    this.#flush();
    this.#unobserve();
    this.#unobserve = () => {};
    this.#id = null;
    this.#record = null;
    this.#bindings = [];
    this.#peerField = null;
    this.#ownField = null;
    this.#unacknowledged = false;
    this.#restartCount();
    this.#form = null;
    this.#message = null;
    this.#root.replaceChildren();
    this.#root.dataset.state = "closed";
    delete this.#root.dataset.worksheetId;
    this.#updateStatus();
    this.dispatchEvent(new CustomEvent("close", { detail: { worksheet: id } }));
  }

  // -------------------------------------------------------------------------------------

  /** @param {string} id */
  #newRecord(id) {
    /** @type {DocRecord} */
    const record = { doc: new Y.Doc(), synced: false, localUpdates: [], unsaved: [], restored: this.#kept.read(id) };
    this.#docs.set(id, record);
    return record;
  }

  /**
   * Bind the form to a document.
   * @param {DocRecord} record
   */
  #use(record) {
    this.#unobserve();
    this.#record = record;
    const doc = record.doc;
    const fields = doc.getMap("fields");
    /** @param {Uint8Array} update @param {unknown} origin */
    const onUpdate = (update, origin) => {
      if (origin === REMOTE || this.#record !== record) return;
      record.localUpdates.push(update);
      record.unsaved.push(update);
      this.#queue.push(update);
      // The person has moved on from a refused change (a while ago): the notice can go.
      if (this.#message && this.#message.dataset.kind === "refused" && Date.now() - this.#refusedAt > NOTICE_MS) {
        this.#setMessage("");
      }
      if (this.#timer === undefined) this.#timer = setTimeout(() => this.#flush(true), COALESCE_MS);
      this.#updateStatus();
    };
    /** @param {Array<Y.YEvent<any>>} events */
    const onChange = (events) => {
      const targets = new Set(events.map((event) => event.target));
      this.#refresh([...targets].every((target) => target instanceof Y.Text) ? targets : null);
    };
    doc.on("update", onUpdate);
    fields.observeDeep(onChange);
    this.#unobserve = () => {
      doc.off("update", onUpdate);
      fields.unobserveDeep(onChange);
    };
    this.#refresh(null);
    this.#updateStatus();
  }

  /** @param {Set<unknown> | null} changed */
  #refresh(changed) {
    for (const binding of this.#bindings) binding.refresh(changed);
    if (!changed) this.#showPeer();
    if (this.#form) this.#form.disabled = !(this.#record && this.#record.synced);
  }

  /** @param {WorksheetMessage} message */
  #render(message) {
    this.#root.dataset.worksheetId = message.worksheet;
    /** @type {import("./worksheet-dom.js").FieldContext} */
    const ctx = {
      root: () => (this.#record ? this.#record.doc.getMap("fields") : new Y.Map()),
      transact: (change) => {
        if (this.#record) this.#record.doc.transact(change);
      },
      t: this.#t,
      newId: () => `${this.#prefix}-${++this.#nextId}`,
      texts: this.#texts,
    };
    const form = renderForm(ctx, message.title, message.template);
    this.#bindings = form.bindings;
    this.#form = form.fields;
    this.#message = form.message;
    this.#root.replaceChildren(...form.elements);
  }

  /** @param {string} data */
  #receiveSync(data) {
    const record = this.#record;
    if (!record || !this.#id) return;
    const caret = captureCaret(this.#texts);
    let result;
    try {
      result = receiveSync(record.doc, data, REMOTE, record.localUpdates);
    } catch (error) {
      console.warn("worksheet: unreadable sync message", error);
      return;
    }
    if (result.step === STEP2 && !record.synced) {
      record.synced = true;
      this.#setMessage(this.#message && this.#message.dataset.kind === "refused" ? null : "");
      this.#refresh(null);
      const restored = record.restored;
      record.restored = null;
      // What an earlier page of this tab typed and the server had not stored: it goes out as
      // typing does (and changes nothing if the server has it after all).
      if (restored) Y.applyUpdate(record.doc, restored, RESTORED);
    }
    let sent = true;
    for (const reply of result.replies) {
      sent = this.#post({ type: "yjs", worksheet: this.#id, data: reply }) && sent;
    }
    if (result.step === STEP1 && sent) {
      // The server now has everything we have: what it lacked is on its way, and anything sent
      // before (perhaps on a socket that died before its `worksheet-saved` came) it had.
      this.#unsent = false;
      this.#unacknowledged = result.carries;
      if (result.carries) this.#needed = this.#posted;
    }
    restoreCaret(caret, record.doc);
    this.#updateStatus();
  }

  /**
   * Merge the waiting local changes and send them as few `update` messages. When it is the
   * timer's turn (`held`) and the socket still holds earlier messages unsent, they wait and
   * merge with what comes next.
   * @param {boolean} [held]
   */
  #flush(held = false) {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#queue.length) return;
    if (held && this.#connected && this.#buffered() > 0) {
      this.#timer = setTimeout(() => this.#flush(true), COALESCE_MS);
      return;
    }
    this.#keepUnsaved();
    const updates = this.#queue;
    this.#queue = [];
    this.#sendUpdates(updates);
  }

  /**
   * Send local changes, merged into as few `update` messages as fit.
   * @param {Uint8Array[]} updates
   */
  #sendUpdates(updates) {
    for (const update of packUpdates(updates)) {
      if (!this.#id || !this.#post({ type: "yjs", worksheet: this.#id, data: encodeData(UPDATE, update) })) {
        this.#unsent = true; // the step 2 after the next step 1 carries it
      } else {
        this.#unacknowledged = true;
        this.#needed = this.#posted;
      }
    }
    this.#updateStatus();
  }

  /**
   * The server dropped a message as too fast, perhaps one of our changes: send every change
   * of ours again a little later (it takes what it lacks and ignores the rest), once.
   */
  #resendLater() {
    if (this.#resendTimer !== undefined) return;
    this.#resendTimer = setTimeout(() => {
      this.#resendTimer = undefined;
      const record = this.#record;
      if (!this.#id || !record || !record.synced || !record.localUpdates.length) return;
      this.#flush();
      this.#sendUpdates(record.localUpdates);
    }, RESEND_MS);
  }

  /**
   * The server refused a change and kept its document: start again from its copy.
   * @param {string} reason
   */
  #reload(reason) {
    const id = this.#id;
    if (!id) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue = [];
    this.#unsent = false;
    this.#unacknowledged = false;
    this.#kept.forget(id); // the refused change must not come back
    this.#use(this.#newRecord(id));
    this.#refusedAt = Date.now();
    this.#setMessage(
      this.#t("refused", "A change could not be saved ({reason}), so the worksheet was reloaded.", { reason }),
      "refused",
    );
    this.#post({ type: "yjs", worksheet: id, data: syncStep1(this.#record ? this.#record.doc : new Y.Doc()) });
  }

  /** Keep the open worksheet's unsaved changes in the tab (worksheet-keep.js). */
  #keepUnsaved() {
    if (this.#id && this.#record && this.#record.unsaved.length) this.#kept.keep(this.#id, this.#record.unsaved);
  }

  /**
   * @param {string | null} text  null keeps the current message
   * @param {string} [kind]
   */
  #setMessage(text, kind = "") {
    const element = this.#message;
    if (!element || text === null) return;
    element.textContent = text;
    element.dataset.kind = kind;
    element.setAttribute("role", kind === "refused" ? "alert" : "status");
  }

  /** @param {{type: string}} message */
  #post(message) {
    let sent = false;
    try {
      sent = this.#send(message) !== false;
    } catch (error) {
      console.warn("worksheet: could not send", error);
    }
    if (!sent) this.#connected = false;
    else if (message.type === "yjs") this.#posted += 1;
    return sent;
  }

  /** A new connection, or another worksheet: `worksheet-saved` counts from nothing again. */
  #restartCount() {
    this.#posted = 0;
    this.#needed = 0;
  }

  #updateStatus() {
    /** @type {PanelStatus} */
    let status;
    if (!this.#id || !this.#record) status = "closed";
    else if (!this.#record.synced) status = this.#connected ? "loading" : "offline";
    else if (!this.#connected) status = "offline";
    else if (this.#queue.length || this.#unsent || this.#unacknowledged) status = "saving";
    else status = "saved";
    if (status === "saved" && this.#id && this.#record && this.#record.unsaved.length) {
      this.#record.unsaved = [];
      this.#kept.forget(this.#id);
    }
    if (!this.#id) this.#root.dataset.state = "closed";
    else this.#root.dataset.state = status;
    if (this.#message && status === "loading" && !this.#message.textContent) {
      this.#setMessage(this.#t("loading", "Loading the worksheet…"));
    }
    if (status === this.#status) return;
    this.#status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status } }));
  }

  // --- Who is editing where -------------------------------------------------------------

  /** @param {EventTarget | null} target */
  #focusMoved(target) {
    clearTimeout(this.#blurTimer);
    const inside = target instanceof Element && this.#root.contains(target);
    const container = inside ? target.closest("[data-field-container]") : null;
    const field = container instanceof HTMLElement ? container.dataset.fieldContainer || null : null;
    if (field === this.#ownField || !this.#id) return;
    this.#ownField = field;
    this.#post({ type: "editing", worksheet: this.#id, field });
  }

  #showPeer() {
    for (const marker of this.#root.querySelectorAll(".worksheet-editing-marker")) marker.remove();
    for (const field of this.#root.querySelectorAll(".is-peer-editing")) field.classList.remove("is-peer-editing");
    const path = this.#peerField;
    if (!path) return;
    const container = this.#root.querySelector(`[data-field-container="${CSS.escape(path)}"]`);
    if (!container) return;
    container.classList.add("is-peer-editing");
    const marker = make("span", "worksheet-editing-marker", this.#t("peerEditing", "The other person is editing"));
    const caption = container.querySelector(":scope > label, :scope > legend");
    if (caption) caption.after(marker);
    else container.prepend(marker);
  }
}
