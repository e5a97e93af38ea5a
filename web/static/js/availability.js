// @ts-check
// Weekly hours editor (therapist/availability.html): "Add a range" and "Remove" buttons.
// Without this script the form still works: every day has one empty row, and a range is
// removed by clearing both of its times.

import { announce, stringsFrom } from "./ui.js";

const form = document.getElementById("hours-form");
const status = document.getElementById("hours-status");
const t = stringsFrom(document.getElementById("hours-strings"));
let serial = 0;

/** @param {string} text */
function say(text) {
  if (status) announce(status, text);
}

/**
 * A new, empty row like `model`, with ids of its own.
 * @param {HTMLLIElement} model
 */
function emptyRowLike(model) {
  const row = /** @type {HTMLLIElement} */ (model.cloneNode(true));
  serial += 1;
  row.querySelectorAll(".field-error").forEach((error) => error.remove());
  for (const input of row.querySelectorAll("input")) {
    const fresh = `${input.name}-new-${serial}`;
    const label = row.querySelector(`label[for="${input.id}"]`);
    input.id = fresh;
    if (label instanceof HTMLLabelElement) label.htmlFor = fresh;
    input.value = "";
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  }
  return row;
}

if (form) {
  for (const hint of document.querySelectorAll(".no-js-hint")) {
    if (hint instanceof HTMLElement) hint.hidden = true;
  }
  for (const button of form.querySelectorAll("button[data-action]")) {
    if (button instanceof HTMLButtonElement) button.hidden = false;
  }

  form.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button[data-action]") : null;
    if (!(button instanceof HTMLButtonElement)) return;
    const day = button.closest("fieldset");
    const list = day?.querySelector(".hours-rows");
    if (!day || !list) return;

    if (button.dataset.action === "add-range") {
      const model = list.querySelector("li");
      if (!(model instanceof HTMLLIElement)) return;
      const row = emptyRowLike(model);
      list.append(row);
      row.querySelector("input")?.focus();
      say(t("added", "Range added."));
      return;
    }

    if (button.dataset.action === "remove-range") {
      const row = button.closest("li");
      if (!(row instanceof HTMLLIElement)) return;
      const rows = list.querySelectorAll("li");
      if (rows.length > 1) {
        row.remove();
      } else {
        // Keep one (empty) row, so the day can get a range again.
        row.querySelectorAll("input").forEach((input) => {
          input.value = "";
        });
      }
      const focusTarget = day.querySelector('button[data-action="add-range"]');
      if (focusTarget instanceof HTMLButtonElement) focusTarget.focus();
      say(t("removed", "Range removed."));
    }
  });
}
