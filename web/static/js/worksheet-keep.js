// @ts-check
// What was typed into a worksheet and is not stored by the server yet, kept in this tab's
// sessionStorage so that it survives the page going away: a phone that discards a background
// tab, a page reloaded while offline. The panel forgets it as soon as the server says it has
// stored everything (the "Saved" status).
//
// Never localStorage: a worksheet is health data. sessionStorage is this tab's alone, and the
// browser drops it when the tab is closed, so a shared device keeps nothing once the person is
// done. No DOM here.

import * as Y from "../vendor/yjs.js";
import { fromBase64, toBase64 } from "./worksheet-sync.js";

const PREFIX = "alcove.unsaved.";
/**
 * At most this many base64 characters are kept per worksheet (a document's limit is far less);
 * beyond it, or when the storage is full, nothing is kept rather than part of it.
 */
export const MAX_KEPT_CHARS = 2_000_000;

/** This tab's sessionStorage, or null where the browser refuses it (some privacy modes). */
export function tabStorage() {
  try {
    return globalThis.sessionStorage || null;
  } catch {
    return null;
  }
}

export class UnsavedEdits {
  #storage;

  /** @param {Storage | null} storage */
  constructor(storage) {
    this.#storage = storage;
  }

  /**
   * Keep `updates` (the worksheet's local changes the server may lack, oldest first) as one.
   * @param {string} worksheet
   * @param {Uint8Array[]} updates
   */
  keep(worksheet, updates) {
    if (!this.#storage) return;
    if (!updates.length) {
      this.forget(worksheet);
      return;
    }
    try {
      const text = toBase64(updates.length === 1 ? updates[0] : Y.mergeUpdates(updates));
      if (text.length > MAX_KEPT_CHARS) throw new RangeError("too large to keep");
      this.#storage.setItem(PREFIX + worksheet, text);
    } catch (error) {
      console.warn("worksheet: unsaved changes are not kept in this tab", error);
      this.forget(worksheet);
    }
  }

  /**
   * The kept changes of a worksheet as one update, or null.
   * @param {string} worksheet
   * @returns {Uint8Array | null}
   */
  read(worksheet) {
    if (!this.#storage) return null;
    try {
      const text = this.#storage.getItem(PREFIX + worksheet);
      if (text === null) return null;
      const update = fromBase64(text);
      Y.decodeUpdate(update); // throws on anything that is not an update
      return update;
    } catch (error) {
      console.warn("worksheet: kept changes are unreadable and dropped", error);
      this.forget(worksheet);
      return null;
    }
  }

  /** @param {string} worksheet */
  forget(worksheet) {
    if (!this.#storage) return;
    try {
      this.#storage.removeItem(PREFIX + worksheet);
    } catch {
      // Nothing could have been kept either.
    }
  }
}
