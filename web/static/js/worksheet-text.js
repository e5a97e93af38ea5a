// @ts-check
// A text field bound to a Y.Text, so that two people can type into the same box: each edit
// of the control becomes the smallest splice of the shared text, and the other person's
// edits are written back without moving the caret (relative positions follow the text).
// During an IME composition the control is left alone and the edit is placed at compositionend.

import * as Y from "../vendor/yjs.js";
import { caption, make } from "./worksheet-dom.js";

/** @typedef {import("./worksheet-dom.js").FieldContext} FieldContext */
/** @typedef {import("./worksheet-dom.js").TemplateField} TemplateField */
/**
 * A text selection, anchored in the Y.Text so remote changes move it along.
 * @typedef {{control: HTMLInputElement | HTMLTextAreaElement, start: Y.RelativePosition,
 *   end: Y.RelativePosition, direction: string | null}} Caret
 */

const DEFAULT_MAX_LENGTH = { short_text: 200, long_text: 5000 };
/** A long paste goes in as several changes, each small enough for one message. */
const SLICE = 4000;

/** @param {string} text */
const codePoints = (text) => Array.from(text).length;

/**
 * The single splice that turns `before` into `after`: common prefix and suffix kept, never
 * cutting a surrogate pair in two.
 * @param {string} before
 * @param {string} after
 * @returns {{index: number, remove: number, insert: string}}
 */
export function textDiff(before, after) {
  let start = 0;
  const shorter = Math.min(before.length, after.length);
  while (start < shorter && before.charCodeAt(start) === after.charCodeAt(start)) start++;
  if (start > 0 && isHighSurrogate(before.charCodeAt(start - 1))) start--;
  let end = 0;
  while (
    end < shorter - start &&
    before.charCodeAt(before.length - 1 - end) === after.charCodeAt(after.length - 1 - end)
  ) {
    end++;
  }
  if (end > 0 && isLowSurrogate(before.charCodeAt(before.length - end))) end--;
  return { index: start, remove: before.length - start - end, insert: after.slice(start, after.length - end) };
}

/** @param {number} code */
const isHighSurrogate = (code) => code >= 0xd800 && code <= 0xdbff;
/** @param {number} code */
const isLowSurrogate = (code) => code >= 0xdc00 && code <= 0xdfff;

/**
 * One text field: an <input> or a <textarea> editing a Y.Text.
 */
export class TextBinding {
  /**
   * @param {FieldContext} ctx
   * @param {TemplateField} field
   * @param {() => Y.Map<unknown> | null} holder  the map holding this field's Y.Text
   * @param {HTMLElement} container
   */
  constructor(ctx, field, holder, container) {
    this.ctx = ctx;
    this.field = field;
    this.holder = holder;
    this.max = field.max_length || DEFAULT_MAX_LENGTH[field.kind === "long_text" ? "long_text" : "short_text"];
    /** What the control showed when it last agreed with the document. */
    this.shadow = "";
    this.composing = false;
    this.applying = false;
    /** Where the selection was when an IME composition started. @type {[Y.RelativePosition, Y.RelativePosition] | null} */
    this.compositionAnchor = null;
    const id = ctx.newId();
    const helpId = caption(ctx, field, container, "label", id);
    const control = field.kind === "long_text" ? make("textarea", "worksheet-input") : make("input", "worksheet-input");
    if (control instanceof HTMLInputElement) control.type = "text";
    else control.rows = 4;
    control.id = id;
    // The server counts code points; maxlength counts UTF-16 units, so it is never more lenient.
    control.maxLength = this.max;
    control.dataset.maxLength = String(this.max);
    if (helpId) control.setAttribute("aria-describedby", helpId);
    this.control = control;
    this.print = make("div", "worksheet-print-value");
    this.print.setAttribute("aria-hidden", "true");
    container.append(control, this.print);
    ctx.texts.set(control, this);
    control.addEventListener("input", (event) => {
      if (this.composing || (event instanceof InputEvent && event.isComposing)) return;
      this.applyLocal();
    });
    control.addEventListener("compositionstart", () => {
      this.composing = true;
      const text = this.text();
      this.compositionAnchor = text
        ? [
            Y.createRelativePositionFromTypeIndex(text, control.selectionStart ?? 0),
            Y.createRelativePositionFromTypeIndex(text, control.selectionEnd ?? 0),
          ]
        : null;
    });
    control.addEventListener("compositionend", () => {
      this.composing = false;
      const caret = this.applyLocal();
      this.compositionAnchor = null;
      if (caret === null) return;
      // The browser places the caret itself once the composition is over: place it after.
      const value = control.value;
      setTimeout(() => {
        if (document.activeElement === control && control.value === value) control.setSelectionRange(caret, caret);
      }, 0);
    });
  }

  /** @returns {Y.Text | null} */
  text() {
    const holder = this.holder();
    const text = holder ? holder.get(this.field.id) : null;
    return text instanceof Y.Text ? text : null;
  }

  /**
   * Write what the user did to the control into the Y.Text.
   * @returns {number | null} where the caret was put, if the control had to be rewritten
   */
  applyLocal() {
    const control = this.control;
    const text = this.text();
    if (!text) {
      control.value = this.shadow;
      return null;
    }
    const current = text.toString();
    let edit = textDiff(this.shadow, control.value);
    if (current !== this.shadow) {
      // The document moved on while an IME composition held the control: place the user's
      // edit where the selection then was, or else splice against the document itself.
      const doc = text.doc;
      const anchor = this.compositionAnchor;
      const start = anchor && doc ? Y.createAbsolutePositionFromRelativePosition(anchor[0], doc) : null;
      const end = anchor && doc ? Y.createAbsolutePositionFromRelativePosition(anchor[1], doc) : null;
      if (start && end && end.index >= start.index) {
        edit = { index: start.index, remove: end.index - start.index, insert: edit.insert };
      } else {
        edit = textDiff(current, control.value);
      }
    }
    const removed = current.slice(edit.index, edit.index + edit.remove);
    const room = this.max - (codePoints(current) - codePoints(removed));
    let insert = edit.insert;
    if (codePoints(insert) > room) insert = Array.from(insert).slice(0, Math.max(0, room)).join("");
    this.applying = true; // refresh() leaves the control alone meanwhile: done below
    try {
      if (edit.remove) this.ctx.transact(() => text.delete(edit.index, edit.remove));
      for (let at = 0; at < insert.length;) {
        let next = Math.min(insert.length, at + SLICE);
        if (next < insert.length && isHighSurrogate(insert.charCodeAt(next - 1))) next--;
        const slice = insert.slice(at, next);
        const offset = edit.index + at;
        this.ctx.transact(() => text.insert(offset, slice));
        at = next;
      }
    } finally {
      this.applying = false;
    }
    this.shadow = text.toString();
    this.print.textContent = this.shadow;
    if (control.value === this.shadow) return null;
    control.value = this.shadow;
    const caret = edit.index + insert.length;
    if (document.activeElement === control) control.setSelectionRange(caret, caret);
    return caret;
  }

  /** @param {Set<unknown> | null} changed */
  refresh(changed) {
    const text = this.text();
    if (changed && text && !changed.has(text)) return;
    if (this.composing || this.applying) return; // applyLocal reconciles
    const value = text ? text.toString() : "";
    if (this.control.value !== value) this.control.value = value;
    this.shadow = value;
    this.print.textContent = value;
    this.control.readOnly = !text;
  }
}

/**
 * Where the caret is, if it is in one of `texts` (before applying the other side's change).
 * @param {WeakMap<Element, TextBinding>} texts
 * @returns {Caret | null}
 */
export function captureCaret(texts) {
  const control = document.activeElement;
  if (!(control instanceof HTMLInputElement || control instanceof HTMLTextAreaElement)) return null;
  const binding = texts.get(control);
  // During an IME composition the control is not touched at all (the binding catches up).
  const text = binding && !binding.composing ? binding.text() : null;
  if (!text || control.selectionStart === null || control.selectionEnd === null) return null;
  return {
    control,
    start: Y.createRelativePositionFromTypeIndex(text, control.selectionStart),
    end: Y.createRelativePositionFromTypeIndex(text, control.selectionEnd),
    direction: control.selectionDirection,
  };
}

/**
 * Put the caret back where it was in the text, wherever that is now.
 * @param {Caret | null} caret
 * @param {Y.Doc} doc
 */
export function restoreCaret(caret, doc) {
  if (!caret || document.activeElement !== caret.control) return;
  const start = Y.createAbsolutePositionFromRelativePosition(caret.start, doc);
  const end = Y.createAbsolutePositionFromRelativePosition(caret.end, doc);
  if (!start || !end) return;
  const direction = caret.direction === "backward" ? "backward" : caret.direction === "forward" ? "forward" : "none";
  if (caret.control.selectionStart !== start.index || caret.control.selectionEnd !== end.index) {
    caret.control.setSelectionRange(start.index, end.index, direction);
  }
}
