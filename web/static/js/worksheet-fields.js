// @ts-check
// The form of one worksheet, bound to its Yjs document (docs/WORKSHEETS.md "Documents").
//
// Each field is a small binding: it builds its controls once, writes the user's changes into
// the document (text as minimal splices of the existing Y.Text, so two people can type into
// the same box), and `refresh()` shows the document's current state. The document can be
// replaced under the bindings (a reload after a refused change): they look their Y types up
// afresh every time. No user text ever goes through innerHTML.

import * as Y from "../vendor/yjs.js";
import { twoStep } from "./ui.js";
import { caption, make, setPath } from "./worksheet-dom.js";
import { TextBinding } from "./worksheet-text.js";

/** @typedef {import("./worksheet-dom.js").TemplateField} TemplateField */
/** @typedef {import("./worksheet-dom.js").FieldContext} FieldContext */
/** @typedef {import("./worksheet-dom.js").Binding} Binding */

const DEFAULT_MAX_ROWS = 20;

/**
 * A plain value (scale, choice, date) stored with `map.set`.
 * @param {FieldContext} ctx
 * @param {TemplateField} field
 * @param {() => Y.Map<unknown> | null} holder
 * @param {HTMLElement} container
 * @returns {Binding}
 */
function valueBinding(ctx, field, holder, container) {
  /** @param {unknown} value */
  const set = (value) => {
    const map = holder();
    if (map) ctx.transact(() => map.set(field.id, value));
  };
  const get = () => {
    const map = holder();
    return map ? map.get(field.id) : undefined;
  };
  if (field.kind === "date") {
    const id = ctx.newId();
    const helpId = caption(ctx, field, container, "label", id);
    const input = make("input", "worksheet-input worksheet-date");
    input.type = "date";
    input.id = id;
    if (helpId) input.setAttribute("aria-describedby", helpId);
    input.addEventListener("change", () => set(input.value || null));
    container.append(input);
    return {
      refresh() {
        const value = get();
        const shown = typeof value === "string" ? value : "";
        if (input.value !== shown) input.value = shown;
      },
    };
  }
  const helpId = caption(ctx, field, container, "legend");
  if (helpId) container.setAttribute("aria-describedby", helpId);
  const name = ctx.newId();
  const row = make("div", field.kind === "scale" ? "worksheet-scale" : "worksheet-options");
  /** @type {Array<[HTMLInputElement, string | number]>} */
  const radios = [];
  const values = field.kind === "scale" ? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10] : field.options || [];
  for (const value of values) {
    const label = make("label", "worksheet-option");
    const radio = make("input");
    radio.type = "radio";
    radio.name = name;
    radio.value = String(value);
    radio.addEventListener("change", () => {
      if (radio.checked) set(value);
    });
    label.append(radio, make("span", "worksheet-option-text", String(value)));
    const end = value === 0 ? field.min_label : value === 10 ? field.max_label : "";
    if (field.kind === "scale" && end) label.append(make("span", "visually-hidden", ` (${end})`));
    row.append(label);
    radios.push([radio, value]);
  }
  container.append(row);
  if (field.kind === "scale" && (field.min_label || field.max_label)) {
    // What the ends mean, under them; screen readers hear it with the 0 and 10 themselves.
    const ends = make("div", "worksheet-scale-ends");
    ends.setAttribute("aria-hidden", "true");
    ends.append(make("span", "", field.min_label || ""), make("span", "", field.max_label || ""));
    container.append(ends);
  }
  const clear = make("button", "button worksheet-clear", ctx.t("clear", "Clear answer"));
  clear.type = "button";
  clear.addEventListener("click", () => set(null));
  container.append(clear);
  return {
    refresh() {
      let value = get();
      if (field.kind === "scale" && typeof value === "number") value = Math.round(value);
      for (const [radio, option] of radios) {
        const checked = option === value;
        if (radio.checked !== checked) radio.checked = checked;
      }
      clear.hidden = value === null || value === undefined;
    },
  };
}

/**
 * A checklist: a Y.Map from each option to true or false, made by the server.
 * @param {FieldContext} ctx
 * @param {TemplateField} field
 * @param {HTMLElement} container
 * @returns {Binding}
 */
function checklistBinding(ctx, field, container) {
  const helpId = caption(ctx, field, container, "legend");
  if (helpId) container.setAttribute("aria-describedby", helpId);
  const list = make("div", "worksheet-options");
  const map = () => {
    const value = ctx.root().get(field.id);
    return value instanceof Y.Map ? value : null;
  };
  /** @type {Array<[HTMLInputElement, string]>} */
  const boxes = [];
  for (const option of field.options || []) {
    const label = make("label", "worksheet-option");
    const box = make("input");
    box.type = "checkbox";
    box.value = option;
    box.addEventListener("change", () => {
      const target = map();
      if (target) ctx.transact(() => target.set(option, box.checked));
    });
    label.append(box, make("span", "worksheet-option-text", option));
    list.append(label);
    boxes.push([box, option]);
  }
  container.append(list);
  return {
    refresh() {
      const target = map();
      for (const [box, option] of boxes) {
        const checked = Boolean(target && target.get(option) === true);
        if (box.checked !== checked) box.checked = checked;
        box.disabled = !target;
      }
    },
  };
}

/**
 * The container and binding of one field (top level or in a group row).
 * @param {FieldContext} ctx
 * @param {TemplateField} field
 * @param {() => Y.Map<unknown> | null} holder
 * @returns {{container: HTMLElement, binding: Binding}}
 */
export function buildField(ctx, field, holder) {
  const grouped = field.kind !== "short_text" && field.kind !== "long_text" && field.kind !== "date";
  const container = make(
    grouped ? "fieldset" : "div",
    `worksheet-field worksheet-kind-${field.kind.replace("_", "-")}`,
  );
  container.dataset.kind = field.kind;
  /** @type {Binding} */
  let binding;
  if (field.kind === "short_text" || field.kind === "long_text") {
    binding = new TextBinding(ctx, field, holder, container);
  } else if (field.kind === "checklist") {
    binding = checklistBinding(ctx, field, container);
  } else if (field.kind === "group") {
    binding = new GroupBinding(ctx, field, container);
  } else {
    binding = valueBinding(ctx, field, holder, container);
  }
  return { container, binding };
}

/** A repeating group: a Y.Array of Y.Map rows, which the participants add and remove. */
class GroupBinding {
  /**
   * @param {FieldContext} ctx
   * @param {TemplateField} field
   * @param {HTMLElement} container
   */
  constructor(ctx, field, container) {
    this.ctx = ctx;
    this.field = field;
    this.maxRows = field.max_rows || DEFAULT_MAX_ROWS;
    const helpId = caption(ctx, field, container, "legend");
    if (helpId) container.setAttribute("aria-describedby", helpId);
    this.list = make("ol", "worksheet-rows");
    this.add = make("button", "button worksheet-add-row", ctx.t("addRow", "Add row"));
    this.add.type = "button";
    this.add.addEventListener("click", () => this.addRow());
    this.full = make("p", "muted small worksheet-rows-full", ctx.t("rowsFull", "This list is full."));
    container.append(this.list, this.add, this.full);
    /** @type {Map<Y.Map<unknown>, {item: HTMLLIElement, heading: HTMLElement, fields: Array<{container: HTMLElement, binding: Binding, id: string}>}>} */
    this.rows = new Map();
    /** A row this browser just added, to move the focus into. @type {Y.Map<unknown> | null} */
    this.added = null;
  }

  /** @returns {Y.Array<Y.Map<unknown>> | null} */
  array() {
    const value = this.ctx.root().get(this.field.id);
    return value instanceof Y.Array ? value : null;
  }

  addRow() {
    const array = this.array();
    if (!array || array.length >= this.maxRows) return;
    const row = new Y.Map();
    for (const sub of this.field.fields || []) {
      row.set(sub.id, sub.kind === "short_text" || sub.kind === "long_text" ? new Y.Text() : null);
    }
    this.added = row;
    this.ctx.transact(() => array.push([row]));
  }

  /** @param {Y.Map<unknown>} row */
  removeRow(row) {
    const array = this.array();
    if (!array) return;
    const index = array.toArray().indexOf(row);
    if (index >= 0) this.ctx.transact(() => array.delete(index, 1));
  }

  /** @param {Set<unknown> | null} changed */
  refresh(changed) {
    const array = this.array();
    const rows = array ? array.toArray().filter((row) => row instanceof Y.Map) : [];
    const structural = !changed || [...changed].some((type) => !(type instanceof Y.Text));
    if (structural) {
      for (const [row, record] of this.rows) {
        if (!rows.includes(row)) {
          record.item.remove();
          this.rows.delete(row);
        }
      }
      rows.forEach((row, index) => {
        let record = this.rows.get(row);
        if (!record) {
          record = this.buildRow(row);
          this.rows.set(row, record);
        }
        if (this.list.children[index] !== record.item)
          this.list.insertBefore(record.item, this.list.children[index] || null);
        record.item.dataset.rowIndex = String(index);
        const heading = this.ctx.t("rowHeading", "Entry {number}", { number: String(index + 1) });
        if (record.heading.textContent !== heading) record.heading.textContent = heading;
        for (const sub of record.fields) setPath(sub.container, `${this.field.id}[${index}].${sub.id}`);
      });
      const full = rows.length >= this.maxRows;
      this.add.hidden = full;
      this.full.hidden = !full;
      this.add.disabled = !array;
    }
    for (const row of rows) {
      const record = this.rows.get(row);
      if (record) for (const sub of record.fields) sub.binding.refresh(structural ? null : changed);
    }
    if (this.added && this.rows.has(this.added)) {
      const first = this.rows.get(this.added)?.item.querySelector("input, textarea");
      this.added = null;
      if (first instanceof HTMLElement) first.focus();
    }
  }

  /** @param {Y.Map<unknown>} row */
  buildRow(row) {
    const item = make("li", "worksheet-row");
    const heading = make("h3", "worksheet-row-heading");
    item.append(heading);
    const fields = (this.field.fields || []).map((sub) => {
      const built = buildField(this.ctx, sub, () => row);
      item.append(built.container);
      return { ...built, id: sub.id };
    });
    const remove = make("button", "button danger worksheet-remove-row", this.ctx.t("removeRow", "Remove this entry"));
    remove.type = "button";
    twoStep(remove, {
      confirmText: this.ctx.t("confirmRemoveRow", "Press again to remove"),
      action: () => this.removeRow(row),
    });
    item.append(remove);
    return { item, heading, fields };
  }
}

/**
 * The whole form of a worksheet: title, instructions, a status line and the fields, disabled
 * until the document has arrived.
 * @param {FieldContext} ctx
 * @param {string} title
 * @param {import("./worksheet-dom.js").Template} template
 */
export function renderForm(ctx, title, template) {
  const heading = make("h2", "worksheet-title", title || template.title);
  heading.tabIndex = -1;
  const message = make("p", "worksheet-message");
  message.setAttribute("role", "status");
  const fields = make("fieldset", "worksheet-fields");
  fields.disabled = true;
  fields.append(make("legend", "visually-hidden", title || template.title));
  const bindings = template.fields.map((field) => {
    const { container, binding } = buildField(ctx, field, ctx.root);
    setPath(container, field.id);
    fields.append(container);
    return binding;
  });
  /** @type {HTMLElement[]} */
  const elements = [heading, message];
  if (template.instructions) elements.push(make("p", "worksheet-instructions", template.instructions));
  elements.push(fields);
  return { elements, bindings, fields, message };
}
