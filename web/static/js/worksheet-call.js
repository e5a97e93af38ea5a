// @ts-check
// The worksheet side of both call pages (call.html, join/session.html): the panel beside the
// video, the "Video | Worksheet" tabs on a phone, and, on the therapist's page, the picker.
//
// The pages load this module with import(), so that a missing Yjs bundle costs the worksheets
// and not the call. Everything arrives on the page's SignallingConnection; the server sends
// `worksheet` again after a reconnect's `welcome` while one is open, and the panel keeps its
// document for that id, so what was typed offline is merged.

import { WorksheetPanel } from "./worksheet-panel.js";
import { byId, stringsFrom } from "./ui.js";

/** @typedef {import("./protocol.js").SignallingConnection} SignallingConnection */
/** @typedef {import("./worksheet-panel.js").WorksheetIncoming} WorksheetIncoming */
/** @typedef {"video" | "worksheet"} Tab */

/** After a reconnect's `welcome`, a worksheet still open comes back within this time. */
const REOPEN_WAIT_MS = 5000;

/**
 * Mount the worksheet panel of a call page.
 * @param {object} options
 * @param {SignallingConnection} options.connection
 * @param {string} [options.appointment]  the therapist's page: "a-<n>", enables the picker
 * @param {string[]} [options.closeOn]    message types after which no worksheet is shown
 *   (the client's `waiting` and `sent-back`: the waiting room gets no worksheet)
 * @returns {WorksheetPanel}
 */
export function mountCallWorksheet({ connection, appointment, closeOn = [] }) {
  const t = stringsFrom(document.getElementById("worksheet-strings"));
  const layout = byId("call-layout");
  // The worksheet messages are an addition to the call's own, which `send` is typed for.
  const send = (/** @type {any} */ message) => connection.send(message);
  const panel = new WorksheetPanel(byId("worksheet"), {
    send,
    buffered: () => connection.bufferedAmount,
    strings: t,
  });
  const tabs = bindTabs(layout);

  /**
   * @param {string} type
   * @param {(detail: any) => void} handler
   */
  const on = (type, handler) =>
    connection.addEventListener(type, (event) => handler(/** @type {CustomEvent} */ (event).detail));

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let reopenTimer;
  for (const type of ["worksheet", "worksheet-closed", "worksheet-saved", "yjs", "editing"]) {
    on(type, (/** @type {WorksheetIncoming} */ message) => {
      if (type === "worksheet") clearTimeout(reopenTimer);
      panel.receive(message);
    });
  }
  on("error", (/** @type {{error: string, value: string, id?: string}} */ message) => {
    // The panel's own messages carry no id: a `rate-limited` with one answers something else.
    if (message.error === "worksheet-refused" || (message.error === "rate-limited" && !message.id))
      panel.receive({ type: "error", error: message.error, value: message.value });
  });
  on("statechange", (/** @type {{state: string}} */ { state }) => {
    if (state !== "open") panel.setConnected(false);
  });
  on("welcome", () => {
    panel.setConnected(true);
    // A worksheet closed while we were away is not sent again: stop showing it. Its
    // document stays with the panel in case it comes back.
    clearTimeout(reopenTimer);
    if (panel.worksheet) reopenTimer = setTimeout(() => panel.close(), REOPEN_WAIT_MS);
  });
  for (const type of closeOn) on(type, () => panel.close());

  panel.addEventListener("open", () => {
    layout.dataset.worksheet = "open";
    if (!appointment && tabs.current() !== "worksheet") tabs.markNews(true);
  });
  panel.addEventListener("close", () => {
    if (appointment) return; // the therapist's pane keeps the picker
    layout.dataset.worksheet = "closed";
    tabs.markNews(false);
    tabs.select("video");
  });

  if (appointment) bindPicker({ connection, panel, appointment, t, tabs });
  return panel;
}

/**
 * The "Video | Worksheet" tabs (shown on narrow screens only, by worksheet.css).
 * @param {HTMLElement} layout  `data-tab` says which is shown
 */
export function bindTabs(layout) {
  const buttons = /** @type {HTMLButtonElement[]} */ ([...layout.querySelectorAll(".call-tab[data-tab]")]);
  /** @returns {Tab} */
  const current = () => (layout.dataset.tab === "worksheet" ? "worksheet" : "video");
  /** @param {Tab} tab */
  const select = (tab) => {
    layout.dataset.tab = tab;
    for (const button of buttons) {
      const selected = button.dataset.tab === tab;
      button.setAttribute("aria-selected", selected ? "true" : "false");
      button.tabIndex = selected ? 0 : -1;
      if (selected) delete button.dataset.news;
    }
  };
  for (const button of buttons) {
    button.addEventListener("click", () => select(button.dataset.tab === "worksheet" ? "worksheet" : "video"));
    button.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const next = buttons[(buttons.indexOf(button) + 1) % buttons.length];
      select(next.dataset.tab === "worksheet" ? "worksheet" : "video");
      next.focus();
      event.preventDefault();
    });
  }
  select(current());
  return {
    current,
    select,
    /** @param {boolean} news */
    markNews(news) {
      const button = buttons.find((b) => b.dataset.tab === "worksheet");
      if (!button) return;
      if (news) button.dataset.news = "true";
      else delete button.dataset.news;
    },
  };
}

/**
 * The therapist's picker: open a new worksheet from a template, or continue one.
 * @param {object} options
 * @param {SignallingConnection} options.connection
 * @param {WorksheetPanel} options.panel
 * @param {string} options.appointment
 * @param {import("./worksheet-dom.js").Strings} options.t
 * @param {ReturnType<typeof bindTabs>} options.tabs
 */
function bindPicker({ connection, panel, appointment, t, tabs }) {
  const choice = byId("worksheet-choice", HTMLSelectElement);
  const open = byId("worksheet-open", HTMLButtonElement);
  const close = byId("worksheet-close", HTMLButtonElement);
  const problem = byId("worksheet-problem");
  const continued = /** @type {HTMLOptGroupElement | null} */ (choice.querySelector("optgroup[data-kind='worksheet']"));
  /** Ids of our requests, to tell an error in answer to one. @type {Set<string>} */
  const pending = new Set();

  const empty = document.getElementById("worksheet-empty");
  // Only once the server has welcomed this socket can it take worksheet-open: earlier, the
  // request would be dropped.
  let welcomed = false;
  const render = () => {
    close.hidden = !panel.worksheet;
    if (empty) empty.hidden = Boolean(panel.worksheet);
    open.disabled = !choice.value || !welcomed;
  };
  choice.addEventListener("change", render);
  connection.addEventListener("welcome", () => {
    welcomed = true;
    render();
  });
  connection.addEventListener("statechange", (event) => {
    const { state } = /** @type {CustomEvent<{state: string}>} */ (event).detail;
    if (state !== "open") {
      welcomed = false;
      render();
    }
  });

  open.addEventListener("click", () => {
    const option = choice.selectedOptions[0];
    if (!option || !option.value) return;
    const kind = option.dataset.kind === "worksheet" ? "worksheet" : "template";
    problem.textContent = "";
    // `request` types only the call's own messages; worksheet-open is an addition to them.
    const message = /** @type {any} */ ({ type: "worksheet-open", appointment, [kind]: option.value });
    const id = connection.request(message);
    if (id) {
      pending.add(id);
      tabs.select("worksheet");
    } else {
      problem.textContent = t("openFailed", "The worksheet could not be opened. Please try again.");
    }
  });

  close.addEventListener("click", () => {
    const id = panel.worksheet;
    if (id) connection.send(/** @type {any} */ ({ type: "worksheet-close", worksheet: id }));
  });

  connection.addEventListener("error", (event) => {
    const message = /** @type {CustomEvent<{id?: string, error: string}>} */ (event).detail;
    if (!message.id || !pending.has(message.id)) return;
    pending.delete(message.id);
    problem.textContent = t("openFailed", "The worksheet could not be opened. Please try again.");
  });

  panel.addEventListener("open", (event) => {
    const { worksheet, title } = /** @type {CustomEvent<{worksheet: string, title: string}>} */ (event).detail;
    pending.clear();
    problem.textContent = "";
    // A worksheet made from a template just now can be continued later in this session too.
    if (continued && ![...choice.options].some((o) => o.dataset.kind === "worksheet" && o.value === worksheet)) {
      const option = document.createElement("option");
      option.value = worksheet;
      option.dataset.kind = "worksheet";
      option.textContent = title;
      continued.append(option);
      continued.hidden = false;
    }
    render();
  });
  panel.addEventListener("close", render);
  render();
}
