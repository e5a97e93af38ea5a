// @ts-check
// The live waiting room on the therapist's dashboard (_lobby.html), fed by `lobby` messages.
// The therapist admits, messages, sends back or ends; nobody is ever admitted automatically.

import { SignallingConnection, CLOSE_POLICY_VIOLATION, CLOSE_REPLACED } from "./protocol.js";
import { announce, byId, formatMinutes, formatTime, stringsFrom, twoStep } from "./ui.js";

/** @typedef {import("./protocol.js").LobbyEntry} LobbyEntry */
/** @typedef {import("./protocol.js").LobbyMessage} LobbyMessage */
/** @typedef {import("./protocol.js").ErrorMessage} ErrorMessage */
/** @typedef {import("./protocol.js").CloseDetail} CloseDetail */
/** @typedef {import("./protocol.js").OutgoingMessage} OutgoingMessage */

const WAITED_REFRESH_MS = 30_000;
/** How long Admit waits for the server to confirm before going to the call page anyway. */
const ADMIT_NAVIGATE_AFTER_MS = 3000;

const stringsElement = byId("lobby-strings");
const t = stringsFrom(stringsElement);
const timeZone = stringsElement.dataset.timezone || undefined;

const el = {
  heading: byId("lobby-heading"),
  status: byId("lobby-status"),
  reconnect: byId("lobby-reconnect", HTMLButtonElement),
  empty: byId("lobby-empty"),
  list: byId("lobby", HTMLUListElement),
  template: byId("lobby-entry-template", HTMLTemplateElement),
  enableNotifications: byId("enable-notifications", HTMLButtonElement),
  notificationsNote: byId("notifications-note"),
  announcer: byId("lobby-announcer"),
};

const baseTitle = document.title;

/** @param {string} text */
const say = (text) => announce(el.announcer, text);

/**
 * `/call/<numeric id>` for an appointment id "a-<numeric id>".
 * @param {string} appointment
 */
export function callUrl(appointment) {
  return `/call/${encodeURIComponent(appointment.replace(/^a-/, ""))}`;
}

// ---------------------------------------------------------------------------------------
// Connection

const connection = new SignallingConnection({ hello: () => ({ version: 1 }) });

/** Requests awaiting a possible error: id → what to do if one comes. @type {Map<string, (error: ErrorMessage) => void>} */
const pending = new Map();

/**
 * Send a request; `onError` runs if the server answers it with an error.
 * @param {OutgoingMessage} message
 * @param {(error: ErrorMessage) => void} onError
 */
function request(message, onError) {
  const id = connection.request(message);
  if (!id) {
    say(t("notConnected", "Not connected."));
    return null;
  }
  pending.set(id, onError);
  // Errors come back at once; forget old ids so the map stays small.
  setTimeout(() => pending.delete(id), 30_000);
  return id;
}

/**
 * @param {string} state
 * @param {string} text
 */
function setStatus(state, text) {
  el.status.dataset.state = state;
  el.status.textContent = text;
}

/**
 * @template T
 * @param {string} type
 * @param {(detail: T) => void} handler
 */
function on(type, handler) {
  connection.addEventListener(type, (event) => handler(/** @type {CustomEvent<T>} */ (event).detail));
}

on("statechange", (/** @type {{state: string}} */ { state }) => {
  if (state === "connecting") setStatus("connecting", t("statusConnecting", "Connecting…"));
  else if (state === "reconnecting") setStatus("reconnecting", t("statusReconnecting", "Reconnecting…"));
});

on("welcome", () => {
  setStatus("open", t("statusOpen", "Live"));
  el.reconnect.hidden = true;
});

on("lobby", (/** @type {LobbyMessage} */ message) => renderLobby(message.participants));

on("error", (/** @type {ErrorMessage} */ message) => {
  if (!message.id) return;
  const handler = pending.get(message.id);
  if (!handler) return;
  pending.delete(message.id);
  handler(message);
});

on("close", (/** @type {CloseDetail} */ detail) => {
  if (detail.willReconnect) return;
  if (detail.code === CLOSE_REPLACED) {
    setStatus("replaced", t("statusReplaced", "Open in another tab."));
  } else if (detail.code === CLOSE_POLICY_VIOLATION || !detail.byUs) {
    setStatus("closed", t("statusClosed", "Not connected."));
  } else {
    return;
  }
  el.reconnect.hidden = false;
});

el.reconnect.addEventListener("click", () => {
  el.reconnect.hidden = true;
  connection.connect();
});

// ---------------------------------------------------------------------------------------
// Entries

/** @type {Map<string, EntryView>} */
const views = new Map();
let firstSnapshot = true;
/** @type {{participant: string, url: string, timer: ReturnType<typeof setTimeout>} | null} */
let admitting = null;
let entrySerial = 0;

/**
 * @param {ParentNode} root
 * @param {string} name
 * @returns {HTMLElement}
 */
function field(root, name) {
  const found = root.querySelector(`[data-field="${name}"]`);
  if (!(found instanceof HTMLElement)) throw new Error(`template: missing ${name}`);
  return found;
}

/**
 * @param {ParentNode} root
 * @param {string} action
 * @returns {HTMLElement}
 */
function action(root, name) {
  const found = root.querySelector(`[data-action="${name}"]`);
  if (!(found instanceof HTMLElement)) throw new Error(`template: missing ${name}`);
  return found;
}

/** One client in the list; updated in place so focus, typed text and armed buttons survive. */
class EntryView {
  /** @param {LobbyEntry} entry */
  constructor(entry) {
    this.entry = entry;
    const serial = ++entrySerial;
    const fragment = /** @type {DocumentFragment} */ (el.template.content.cloneNode(true));
    const item = fragment.querySelector("li");
    if (!item) throw new Error("template: missing li");
    this.item = item;
    item.dataset.participant = entry.participant;
    this.name = field(item, "name");
    this.name.id = `lobby-name-${serial}`;
    this.state = field(item, "state");
    this.time = field(item, "time");
    this.waited = field(item, "waited");
    this.devices = field(item, "devices");
    this.feedback = field(item, "feedback");
    this.form = /** @type {HTMLFormElement} */ (field(item, "message-form"));
    this.input = /** @type {HTMLInputElement} */ (field(item, "message-input"));
    this.label = /** @type {HTMLLabelElement} */ (field(item, "message-label"));
    const hint = field(item, "message-hint");
    hint.id = `lobby-message-hint-${serial}`;
    this.input.id = `lobby-message-${serial}`;
    this.input.setAttribute("aria-describedby", hint.id);
    this.label.htmlFor = this.input.id;
    this.form.id = `lobby-message-form-${serial}`;

    this.admit = /** @type {HTMLButtonElement} */ (action(item, "admit"));
    this.openCall = /** @type {HTMLAnchorElement} */ (action(item, "open-call"));
    this.message = /** @type {HTMLButtonElement} */ (action(item, "message"));
    this.sendBack = /** @type {HTMLButtonElement} */ (action(item, "send-back"));
    this.end = /** @type {HTMLButtonElement} */ (action(item, "end"));
    this.cancelMessage = /** @type {HTMLButtonElement} */ (action(item, "cancel-message"));
    this.admitText = this.admit.textContent || "";
    this.message.setAttribute("aria-controls", this.form.id);
    // Each button's accessible description is the client's name ("Admit" … "Alex Morgan").
    for (const control of [this.admit, this.openCall, this.message, this.sendBack, this.end]) {
      control.setAttribute("aria-describedby", this.name.id);
    }

    this.admit.addEventListener("click", () => this.onAdmit());
    this.message.addEventListener("click", () => this.toggleForm(this.form.hidden));
    this.cancelMessage.addEventListener("click", () => this.toggleForm(false));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.onSendMessage();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.toggleForm(false);
    });
    this.sendBack.addEventListener("click", () => {
      request({ type: "send-back", participant: this.entry.participant }, () =>
        this.say(t("requestFailed", "That did not work.")),
      );
    });
    twoStep(this.end, {
      confirmText: t("confirmEnd", "Confirm end"),
      armedAnnouncement: t("confirmEndHint", "", { name: entry.name }),
      announce: say,
      action: () => {
        request({ type: "end", appointment: this.entry.appointment }, () =>
          this.say(t("requestFailed", "That did not work.")),
        );
      },
    });
    this.update(entry);
  }

  /** @param {LobbyEntry} entry */
  update(entry) {
    this.entry = entry;
    const focusWasInside = this.item.contains(document.activeElement);
    this.item.dataset.state = entry.online ? entry.state : "offline";
    setText(this.name, entry.name);
    setText(this.state, stateLabel(entry));
    setText(this.time, `${formatTime(entry.start, timeZone)}–${formatTime(entry.end, timeZone)}`);
    this.renderWaited();
    this.renderDevices();
    this.label.textContent = t("messageLabel", "Message for {name}", { name: entry.name });
    this.openCall.href = callUrl(entry.appointment);

    const waiting = entry.state === "waiting";
    const inside = entry.state === "admitted" || entry.state === "in_call";
    const isAdmitting = admitting !== null && admitting.participant === entry.participant;
    this.admit.hidden = !(waiting && entry.online) && !isAdmitting;
    this.message.hidden = !(waiting && entry.online);
    this.openCall.hidden = !inside;
    this.sendBack.hidden = !inside;
    if (this.message.hidden && !this.form.hidden) this.toggleForm(false, false);

    // A control that just disappeared took the keyboard focus with it: keep it in the entry.
    const active = document.activeElement;
    if (focusWasInside && (!this.item.contains(active) || (active instanceof HTMLElement && active.closest("[hidden]")))) {
      this.focusFirstAction();
    }
  }

  renderWaited() {
    const entry = this.entry;
    if (entry.state !== "waiting") {
      setText(this.waited, "");
      return;
    }
    const since = Date.parse(entry.waitingSince);
    const minutes = Number.isNaN(since) ? 0 : (Date.now() - since) / 60_000;
    setText(
      this.waited,
      minutes < 1
        ? t("waitedJustNow", "just arrived")
        : t("waited", "waiting {duration}", { duration: formatMinutes(minutes) }),
    );
  }

  renderDevices() {
    const devices = this.entry.devices;
    if (!devices) {
      this.devices.replaceChildren(t("devicesUnknown", "Camera and microphone not checked yet"));
      return;
    }
    const parts = [
      deviceLabel("camera", devices.camera),
      deviceLabel("microphone", devices.microphone),
    ];
    const nodes = [];
    for (const part of parts) {
      const span = document.createElement("span");
      span.className = part.ok ? "device-ok" : "device-problem";
      const mark = document.createElement("span");
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = part.ok ? "✓ " : "✗ ";
      span.append(mark, part.text);
      if (nodes.length) nodes.push(" · ");
      nodes.push(span);
    }
    const connection = connectionLabel(devices);
    if (connection) nodes.push(" · ", connection);
    this.devices.replaceChildren(...nodes);
  }

  focusFirstAction() {
    const first = [this.admit, this.openCall, this.message, this.sendBack, this.end].find((control) => !control.hidden);
    if (first) first.focus();
  }

  /**
   * @param {boolean} open
   * @param {boolean} [returnFocus]
   */
  toggleForm(open, returnFocus = true) {
    this.form.hidden = !open;
    this.message.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) this.input.focus();
    else if (returnFocus && !this.message.hidden) this.message.focus();
  }

  /** @param {string} text */
  say(text) {
    this.feedback.textContent = text;
    say(text);
  }

  onAdmit() {
    const entry = this.entry;
    const id = request({ type: "admit", participant: entry.participant }, () => {
      if (admitting) clearTimeout(admitting.timer);
      admitting = null;
      this.admit.disabled = false;
      this.admit.textContent = this.admitText;
      this.say(t("admitFailed", "Could not admit.", { name: this.entry.name }));
    });
    if (!id) return;
    this.admit.disabled = true;
    this.admit.textContent = t("admitting", "Admitting…");
    const url = callUrl(entry.appointment);
    if (admitting) clearTimeout(admitting.timer);
    admitting = {
      participant: entry.participant,
      url,
      // No confirmation soon (or a confirmation we missed): go anyway; the call page shows
      // the client's state and can admit them itself.
      timer: setTimeout(() => goToCall(url), ADMIT_NAVIGATE_AFTER_MS),
    };
  }

  onSendMessage() {
    const text = this.input.value.trim();
    if (!text) {
      this.input.focus();
      return;
    }
    const name = this.entry.name;
    const id = request({ type: "message", participant: this.entry.participant, text: [...text].slice(0, 500).join("") }, () =>
      this.say(t("messageFailed", "The message could not be delivered.", { name })),
    );
    if (!id) return;
    this.input.value = "";
    this.toggleForm(false);
    this.say(t("messageSent", "Message sent."));
  }
}

/**
 * @param {HTMLElement} element
 * @param {string} text
 */
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** @param {LobbyEntry} entry */
function stateLabel(entry) {
  // Admitted but not connected: the server keeps them admitted while they come back.
  if (!entry.online && entry.state !== "waiting") return t("stateReconnecting", "reconnecting…");
  if (!entry.online) return t("stateOffline", "Offline");
  if (entry.state === "waiting") return t("stateWaiting", "Waiting");
  if (entry.state === "admitted") return t("stateAdmitted", "Admitted");
  return t("stateInCall", "In call");
}

/**
 * @param {"camera" | "microphone"} kind
 * @param {import("./protocol.js").DeviceStatus} status
 */
function deviceLabel(kind, status) {
  const key = `${kind}${status[0].toUpperCase()}${status.slice(1)}`;
  return { ok: status === "ok", text: t(key, `${kind}: ${status}`) };
}

/**
 * The client's connection test (optional in the device summary), as a span; null if not run.
 * @param {object} devices
 */
function connectionLabel(devices) {
  /** @type {import("./connection-test.js").ConnectionSummary | undefined} */
  const connection = /** @type {any} */ (devices).connection;
  if (!connection) return null;
  const key = `connection${connection.verdict[0].toUpperCase()}${connection.verdict.slice(1)}`;
  const ok = connection.verdict === "good" || connection.verdict === "fair";
  const span = document.createElement("span");
  span.className = "lobby-connection";
  const mark = document.createElement("span");
  mark.setAttribute("aria-hidden", "true");
  mark.textContent = ok ? "✓ " : "✗ ";
  const label = document.createElement("span");
  if (!ok) label.className = "connection-problem";
  label.textContent = t(key, `connection: ${connection.verdict}`);
  span.append(mark, label);
  if (connection.verdict !== "failed") {
    /** @param {number | null} value */
    const shown = (value) => (value === null ? "–" : value.toLocaleString());
    const details = t("connectionDetails", "{rtt} ms, {loss} %, {up}/{down} kbit/s", {
      rtt: shown(connection.rttMs),
      loss: shown(connection.lossPercent),
      up: shown(connection.kbpsUp),
      down: shown(connection.kbpsDown),
    });
    span.append(` (${details})`);
  }
  return span;
}

/** @param {string} url */
function goToCall(url) {
  if (admitting) clearTimeout(admitting.timer);
  admitting = null;
  location.assign(url);
}

/** @param {LobbyEntry[]} entries */
function renderLobby(entries) {
  const focusWasInList = el.list.contains(document.activeElement);
  const seen = new Set();
  /** @type {LobbyEntry[]} */
  const arrivals = [];

  entries.forEach((entry, index) => {
    seen.add(entry.participant);
    let view = views.get(entry.participant);
    if (view) {
      view.update(entry);
    } else {
      view = new EntryView(entry);
      views.set(entry.participant, view);
      if (!firstSnapshot && entry.state === "waiting") arrivals.push(entry);
    }
    // Keep the server's order, moving as few nodes as possible (moving one loses its focus).
    const current = el.list.children[index];
    if (current !== view.item) el.list.insertBefore(view.item, current || null);
  });

  for (const [participant, view] of views) {
    if (seen.has(participant)) continue;
    views.delete(participant);
    view.item.remove();
  }

  if (focusWasInList && !el.list.contains(document.activeElement)) el.heading.focus();

  // The client we are admitting has been let in: open their call.
  if (admitting) {
    const entry = entries.find((e) => e.participant === admitting?.participant);
    if (!entry || entry.state !== "waiting") goToCall(admitting.url);
  }

  el.empty.hidden = entries.length > 0;
  const waiting = entries.filter((entry) => entry.state === "waiting" && entry.online).length;
  document.title = waiting > 0 ? `(${waiting}) ${baseTitle}` : baseTitle;

  if (arrivals.length) {
    chime();
    notify();
    for (const entry of arrivals) say(t("arrived", "{name} is waiting.", { name: entry.name }));
  }
  firstSnapshot = false;
}

setInterval(() => {
  for (const view of views.values()) view.renderWaited();
}, WAITED_REFRESH_MS);

// ---------------------------------------------------------------------------------------
// Arrival sound and desktop notification

/** @type {AudioContext | null} */
let audioContext = null;

function audio() {
  if (!audioContext) {
    const AudioContextClass = window.AudioContext || /** @type {any} */ (window).webkitAudioContext;
    if (!AudioContextClass) return null;
    audioContext = new AudioContextClass();
  }
  if (audioContext.state === "suspended") audioContext.resume().catch(() => {});
  return audioContext;
}

// Browsers let audio start only after the user has interacted with the page.
const unlockAudio = () => {
  audio();
  document.removeEventListener("pointerdown", unlockAudio);
  document.removeEventListener("keydown", unlockAudio);
};
document.addEventListener("pointerdown", unlockAudio);
document.addEventListener("keydown", unlockAudio);

/** A short, soft two-note chime made with oscillators (no audio file). */
function chime() {
  const context = audio();
  if (!context) return;
  const start = context.currentTime + 0.02;
  [
    [659.25, 0],
    [987.77, 0.16],
  ].forEach(([frequency, offset]) => {
    const oscillator = context.createOscillator();
    oscillator.type = "sine";
    oscillator.frequency.value = frequency;
    const gain = context.createGain();
    const at = start + offset;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.12, at + 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.9);
    oscillator.connect(gain);
    gain.connect(context.destination);
    oscillator.start(at);
    oscillator.stop(at + 1);
  });
}

/** A desktop notification while the tab is in the background. Never the client's name. */
function notify() {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const notification = new Notification(t("notificationTitle", "A client is waiting"), {
      body: t("notificationBody", ""),
      tag: "alcove-waiting-room",
    });
    notification.addEventListener("click", () => {
      window.focus();
      notification.close();
    });
  } catch {
    // Some mobile browsers only allow notifications from a service worker.
  }
}

function renderNotificationControls() {
  if (!("Notification" in window)) {
    el.enableNotifications.hidden = true;
    el.notificationsNote.hidden = true;
    return;
  }
  const permission = Notification.permission;
  el.enableNotifications.hidden = permission !== "default";
  el.notificationsNote.hidden = permission === "default";
  if (permission === "granted") el.notificationsNote.textContent = t("notificationsOn", "");
  else if (permission === "denied") el.notificationsNote.textContent = t("notificationsBlocked", "");
}

el.enableNotifications.addEventListener("click", async () => {
  audio();
  try {
    await Notification.requestPermission();
  } catch {
    // Old Safari takes a callback instead; it still updates the permission.
  }
  renderNotificationControls();
  if (Notification.permission !== "default") el.notificationsNote.focus();
});
el.notificationsNote.tabIndex = -1;

renderNotificationControls();
connection.connect();
