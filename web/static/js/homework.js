// @ts-check
// The homework page: the client carries on with a worksheet between sessions.
//
// Its own websocket, `/homework/ws`, authenticated by the homework cookie (no `hello`): on
// open the server sends `worksheet` then its sync step 1, and the page speaks only `yjs`,
// `editing` and `pong`. The socket comes back after an outage with a growing, jittered delay,
// as protocol.js does; the panel keeps its document meanwhile, so what is typed offline is
// sent (merged by the sync exchange) once the server is reachable again.
//
// The page (written with gettext) provides #worksheet, #worksheet-status, optionally
// #worksheet-strings (data-* texts, as on the call pages, plus data-saved, data-saving,
// data-offline, data-connecting, data-closed, data-unsaved-done) and optionally a "Mark as
// done" form with a #homework-done button, which is a plain POST.

import { WorksheetPanel } from "./worksheet-panel.js";
import { byId, stringsFrom } from "./ui.js";

/** @typedef {import("./worksheet-panel.js").PanelStatus} PanelStatus */

/** Close codes after which the page must not reconnect (as in protocol.js). */
const FINAL_CLOSE_CODES = [1008, 4001, 4003];
const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
/** The server pings every 20 s; after this long without any frame the socket is presumed dead. */
const LIVENESS_TIMEOUT_MS = 50_000;
const LIVENESS_CHECK_MS = 5_000;
/** How long "Mark as done" waits for the last changes to be sent. */
const DONE_WAIT_MS = 5_000;

const t = stringsFrom(document.getElementById("worksheet-strings"));
const statusElement = byId("worksheet-status");
statusElement.setAttribute("role", "status");
statusElement.classList.add("worksheet-status");
/** @type {WebSocket | null} */
let socket = null;
let attempt = 0;
let lastReceived = 0;
let final = false;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let retryTimer;

const panel = new WorksheetPanel(byId("worksheet"), {
  send,
  buffered: () => (socket ? socket.bufferedAmount : 0),
  strings: t,
});

/** @param {object} message */
function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  socket.send(JSON.stringify(message));
  return true;
}

function socketUrl() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/homework/ws";
}

function open() {
  clearTimeout(retryTimer);
  if (socket || final) return;
  renderStatus();
  /** @type {WebSocket} */
  let ws;
  try {
    ws = new WebSocket(socketUrl());
  } catch {
    scheduleReconnect();
    return;
  }
  socket = ws;
  ws.addEventListener("open", () => {
    if (socket !== ws) return;
    lastReceived = Date.now();
  });
  ws.addEventListener("message", (event) => {
    if (socket !== ws) return;
    lastReceived = Date.now();
    onMessage(event.data);
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    socket = null;
    panel.setConnected(false);
    if (FINAL_CLOSE_CODES.includes(event.code)) {
      final = true;
      renderStatus();
      return;
    }
    scheduleReconnect();
  });
}

/** @param {unknown} data */
function onMessage(data) {
  if (typeof data !== "string") return;
  /** @type {any} */
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return;
  }
  if (!message || typeof message !== "object" || typeof message.type !== "string") return;
  if (message.type === "ping") {
    send({ type: "pong", ts: message.ts });
    return;
  }
  if (message.type === "worksheet") attempt = 0; // the server took us: start short again
  if (message.type === "error" && message.error !== "worksheet-refused" && message.error !== "rate-limited") {
    console.warn("homework:", message.error, message.value);
    return;
  }
  panel.receive(message);
}

function scheduleReconnect() {
  const base = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** attempt);
  attempt += 1;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(open, Math.round(base * (0.5 + Math.random()))); // ±50 % jitter
  renderStatus();
}

// A socket that went silent (the network left without a close frame): drop it and start over.
setInterval(() => {
  const ws = socket;
  if (!ws || ws.readyState !== WebSocket.OPEN || Date.now() - lastReceived < LIVENESS_TIMEOUT_MS) return;
  socket = null;
  try {
    ws.close(4000, "liveness timeout");
  } catch {
    // already closing
  }
  panel.setConnected(false);
  scheduleReconnect();
}, LIVENESS_CHECK_MS);

window.addEventListener("online", () => {
  if (!socket && !final) {
    attempt = 0;
    open();
  }
});

// ---------------------------------------------------------------------------------------
// Status

function renderStatus() {
  const status = panel.status;
  /** @type {string} */
  let state = status;
  let text;
  if (final) {
    state = "closed";
    text = t("closed", "This page is no longer connected. Reload it to carry on.");
  } else if (status === "saved") {
    text = t("saved", "Saved");
  } else if (status === "saving") {
    text = t("saving", "Saving…");
  } else if (status === "offline" || (status === "closed" && retryTimer !== undefined && !socket)) {
    state = "offline";
    text = t("offline", "Offline — your changes will be sent when you are back online");
  } else {
    state = "loading";
    text = t("connecting", "Connecting…");
  }
  statusElement.dataset.state = state;
  if (statusElement.textContent !== text) statusElement.textContent = text;
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let savingTimer;
// Typing goes "saving", "saved" several times a second: say "Saving…" only when it lasts, so
// the status (a live region) does not chatter.
panel.addEventListener("status", () => {
  clearTimeout(savingTimer);
  if (panel.status === "saving") savingTimer = setTimeout(renderStatus, 1000);
  else renderStatus();
});

// Leaving with changes that have not reached the server loses them: let the browser ask.
window.addEventListener("beforeunload", (event) => {
  if (panel.status === "saving" || panel.status === "offline") event.preventDefault();
});

// ---------------------------------------------------------------------------------------
// "Mark as done": a plain form POST, sent once the last changes are out.

const done = document.getElementById("homework-done");
const doneForm = done ? done.closest("form") : null;
if (doneForm) {
  let confirmed = false;
  doneForm.addEventListener("submit", (event) => {
    if (confirmed || panel.status === "saved" || panel.status === "closed") return;
    event.preventDefault();
    const submitter = event instanceof SubmitEvent ? event.submitter : null;
    const started = Date.now();
    const retry = () => {
      if (panel.status === "saved") {
        confirmed = true;
        doneForm.requestSubmit(submitter instanceof HTMLElement ? submitter : undefined);
      } else if (Date.now() - started < DONE_WAIT_MS && panel.status === "saving") {
        setTimeout(retry, 200);
      } else {
        statusElement.textContent = t(
          "unsavedDone",
          "Your latest changes have not reached the server yet. Please wait until it says “Saved”, then try again.",
        );
        statusElement.dataset.state = "offline";
      }
    };
    retry();
  });
}

open();
