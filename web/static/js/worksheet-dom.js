// @ts-check
// What the worksheet form is made of: the template's shape (docs/WORKSHEETS.md "Templates"),
// what a field binding needs from the panel, and the few DOM functions the bindings share.
// Text always goes in through textContent: templates and answers are never markup.

/** @typedef {import("../vendor/yjs.js").Map<unknown>} YMap */

/**
 * @typedef {object} TemplateField
 * @property {string} id
 * @property {string} label
 * @property {"short_text" | "long_text" | "scale" | "choice" | "checklist" | "group" | "date"} kind
 * @property {string} [help]
 * @property {boolean} [required]
 * @property {number} [max_length]
 * @property {string} [min_label]
 * @property {string} [max_label]
 * @property {string[]} [options]
 * @property {TemplateField[]} [fields]
 * @property {number} [max_rows]
 */
/** @typedef {{id: string, title: string, instructions?: string, fields: TemplateField[]}} Template */
/** @typedef {(key: string, fallback: string, values?: Record<string, string>) => string} Strings */
/**
 * What the bindings need from the panel.
 * @typedef {object} FieldContext
 * @property {() => YMap} root        the `fields` map of the current document
 * @property {(change: () => void) => void} transact  one local change
 * @property {Strings} t
 * @property {() => string} newId              a fresh element id
 * @property {WeakMap<Element, import("./worksheet-text.js").TextBinding>} texts  text controls, for the caret
 */
/** @typedef {{refresh: (changed: Set<unknown> | null) => void}} Binding */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function make(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/**
 * The label, required mark and help of a field, inside `container`.
 * @param {FieldContext} ctx
 * @param {TemplateField} field
 * @param {HTMLElement} container
 * @param {"label" | "legend"} tag
 * @param {string} [controlId]
 * @returns {string | null} the help's id, for aria-describedby
 */
export function caption(ctx, field, container, tag, controlId) {
  const label = make(tag, "worksheet-label", field.label);
  if (label instanceof HTMLLabelElement && controlId) label.htmlFor = controlId;
  if (field.required) label.append(" ", make("span", "worksheet-required", ctx.t("required", "(required)")));
  container.append(label);
  if (!field.help) return null;
  const help = make("p", "worksheet-help", field.help);
  help.id = ctx.newId();
  container.append(help);
  return help.id;
}

/**
 * Set the field path of a container and its controls (it changes when rows above go away).
 * @param {HTMLElement} container
 * @param {string} path
 */
export function setPath(container, path) {
  if (container.dataset.fieldContainer === path) return;
  container.dataset.fieldContainer = path;
  for (const control of container.querySelectorAll("input, textarea")) {
    if (control instanceof HTMLElement && control.closest(".worksheet-field") === container) {
      control.dataset.fieldPath = path;
    }
  }
}
