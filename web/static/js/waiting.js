// @ts-check
// The client's session page (join/session.html): pre-join device check, waiting room, call,
// and the end states. One page; sections are shown and hidden with the `hidden` attribute.

import "./localtime.js";
import { SignallingConnection, CLOSE_ENDED, CLOSE_POLICY_VIOLATION, CLOSE_REPLACED } from "./protocol.js";
import {
  LocalMedia,
  bindPagePickers,
  createLevelMeter,
  helpKeyFor,
  detectBrowser,
  playTestSound,
  setSpeaker,
  showPermissionHelp,
} from "./devices.js";
import { Call } from "./call.js";
import { mountCallExtrasSafely } from "./call-extras.js";
import { storedConnectionSummary } from "./connection-test.js";
import { callStateLine } from "./call-state.js";
import { bindSelfView } from "./self-view.js";
import { attachStream, byId, formatTime, setPressed, showSection, stringsFrom } from "./ui.js";

/** @typedef {import("./protocol.js").WelcomeMessage} WelcomeMessage */
/** @typedef {import("./protocol.js").WaitingMessage} WaitingMessage */
/** @typedef {import("./protocol.js").MessageToWaitingMessage} MessageToWaitingMessage */
/** @typedef {import("./protocol.js").CloseDetail} CloseDetail */
/** @typedef {import("./devices.js").DeviceKind} DeviceKind */
/** @typedef {import("./call.js").CallState} CallState */

const SECTIONS = ["prejoin", "waiting", "call", "ended", "left", "replaced", "trouble"];
const t = stringsFrom(byId("session-strings"));

const el = {
  network: byId("network-status"),
  preview: byId("preview-video", HTMLVideoElement),
  previewPlaceholder: byId("preview-placeholder"),
  cameraStatus: byId("camera-status"),
  microphoneStatus: byId("microphone-status"),
  help: byId("permission-help"),
  helpHeading: byId("permission-help-heading"),
  helpSteps: byId("permission-help-steps"),
  retry: byId("retry-devices", HTMLButtonElement),
  meter: byId("mic-level"),
  meterFill: byId("mic-level-fill"),
  micHint: byId("mic-hint"),
  cameraSelect: byId("camera-select", HTMLSelectElement),
  microphoneSelect: byId("microphone-select", HTMLSelectElement),
  speakerSelect: byId("speaker-select", HTMLSelectElement),
  speakerField: byId("speaker-field"),
  speakerNote: byId("speaker-note"),
  testSound: byId("test-sound", HTMLButtonElement),
  join: byId("join-waiting-room", HTMLButtonElement),
  waitingStatus: byId("waiting-status"),
  welcomeBox: byId("welcome-box"),
  welcomeText: byId("welcome-text"),
  messagesHeading: byId("messages-heading"),
  messages: byId("waiting-messages"),
  waitingSelf: byId("waiting-local-video", HTMLVideoElement),
  connectionState: byId("connection-state"),
  remoteVideo: byId("remote-video", HTMLVideoElement),
  remotePlaceholder: byId("remote-placeholder"),
  localVideo: byId("local-video", HTMLVideoElement),
  playRemote: byId("play-remote", HTMLButtonElement),
  selfState: byId("self-state"),
  mute: byId("mute", HTMLButtonElement),
  camera: byId("camera", HTMLButtonElement),
  leave: byId("leave", HTMLButtonElement),
  rejoin: byId("rejoin", HTMLButtonElement),
  useHere: byId("use-here", HTMLButtonElement),
  tryAgain: byId("try-again", HTMLButtonElement),
};
const stateLine = callStateLine(el.connectionState, t);

const media = new LocalMedia();
const renderSelfState = bindSelfView(el, media, t);
let mediaChecked = false;
/** @type {SignallingConnection | null} */
let connection = null;
/** @type {WelcomeMessage | null} */
let welcome = null;
/** @type {Call | null} */
let call = null;
/** When `admitted` arrived (performance.now()), until the call connects. @type {number | null} */
let admittedAt = null;
/** Reconnecting, audio only, screen sharing, quality, timer and chat (call-extras.js). @type {import("./call-extras.js").CallExtras | null} */
let extras = null;
let speakerId = "";
let sentBack = false;
let leaving = false;
let finished = false;

/** @param {string} id */
function show(id) {
  showSection(SECTIONS, id);
  if (id !== "prejoin") stopMeter();
  if (id === "prejoin") startMeter();
}

// ---------------------------------------------------------------------------------------
// Devices (pre-join)

/** @type {() => void} */
let stopMeterFn = () => {};
/** @type {MediaStreamTrack | null} */
let meterTrack = null;
let heardAt = 0;

function startMeter() {
  const track = media.track("microphone");
  if (track === meterTrack) return;
  stopMeter();
  if (!track || el.join.closest("section")?.hidden) return;
  meterTrack = track;
  try {
    stopMeterFn = createLevelMeter(track, el.meter, el.meterFill, (level) => {
      const now = Date.now();
      if (level > 18) heardAt = now;
      const text = now - heardAt < 1500 ? t("micHeard", "We can hear you.") : t("micHint", "");
      if (text && el.micHint.textContent !== text) el.micHint.textContent = text;
    });
  } catch (error) {
    console.warn("level meter:", error);
  }
}

function stopMeter() {
  stopMeterFn();
  stopMeterFn = () => {};
  meterTrack = null;
}

/**
 * @param {DeviceKind} kind
 */
function statusText(kind) {
  const check = media.checks[kind];
  const key = check.status === "ok" ? "ok" : check.problem || "checking";
  const name = `${kind}${key[0].toUpperCase()}${key.slice(1)}`;
  return { ok: check.status === "ok", text: t(name, "") };
}

/**
 * @param {HTMLElement} item
 * @param {{ok: boolean, text: string}} status
 */
function renderStatus(item, status) {
  const mark = document.createElement("span");
  mark.className = "status-mark";
  mark.setAttribute("aria-hidden", "true");
  mark.textContent = status.ok ? "✓" : "✗";
  const text = document.createElement("span");
  text.textContent = status.text;
  item.replaceChildren(mark, " ", text);
  item.className = status.ok ? "status-ok" : "status-problem";
}

function renderDevices() {
  for (const video of [el.preview, el.waitingSelf, el.localVideo]) {
    // Re-attach so a swapped track is shown at once in every browser.
    video.srcObject = null;
    attachStream(video, media.stream.getTracks().length ? media.stream : null);
  }
  const hasCamera = Boolean(media.track("camera"));
  el.previewPlaceholder.hidden = hasCamera;
  if (!mediaChecked) return;
  renderStatus(el.cameraStatus, statusText("camera"));
  renderStatus(el.microphoneStatus, statusText("microphone"));
  // Permission refused: the browser's own steps. No device, or a busy one: just "Try again".
  const denied = media.checks.camera.problem === "denied" || media.checks.microphone.problem === "denied";
  const retryable = Object.values(media.checks).some(
    (check) => check.status !== "ok" && check.problem !== "unsupported",
  );
  el.help.hidden = !retryable;
  el.helpHeading.hidden = !denied;
  if (denied) {
    if (!el.helpSteps.firstChild) showPermissionHelp(el.helpSteps, helpKeyFor(detectBrowser()));
  } else {
    el.helpSteps.replaceChildren();
  }
  if (!el.join.closest("section")?.hidden) startMeter();
  if (call) call.setLocalStream(media.stream);
  renderSelfState();
}

media.addEventListener("change", renderDevices);

bindPagePickers(media, el, t, (deviceId) => {
  speakerId = deviceId;
  setSpeaker([el.remoteVideo], deviceId);
});

el.retry.addEventListener("click", () => media.start());
el.testSound.addEventListener("click", () => playTestSound(speakerId));

async function startDevices() {
  await media.start();
  mediaChecked = true;
  renderDevices();
}

// ---------------------------------------------------------------------------------------
// Signalling

function connect() {
  finished = false;
  leaving = false;
  if (!connection) {
    connection = new SignallingConnection({
      hello: () =>
        mediaChecked
          ? { version: 1, devices: { ...media.summary(), ...storedConnectionSummary() } }
          : { version: 1 },
    });
    wire(connection);
    extras = mountCallExtrasSafely({ connection, media });
    worksheetsReady = mountWorksheets(connection);
  }
  const conn = connection;
  // Once the worksheet panel listens, so the `worksheet` that follows `welcome` is not missed.
  worksheetsReady.finally(() => conn.connect());
}

/** @type {Promise<void>} */
let worksheetsReady = Promise.resolve();

/**
 * The worksheet panel (worksheet-call.js), loaded on its own: without it the call still works.
 * In the waiting room no worksheet is shown.
 * @param {SignallingConnection} conn
 */
async function mountWorksheets(conn) {
  try {
    const { mountCallWorksheet } = await import("./worksheet-call.js");
    mountCallWorksheet({ connection: conn, closeOn: ["waiting", "sent-back"] });
  } catch (error) {
    console.warn("worksheets unavailable:", error);
  }
}

/** @param {string} text */
function setNetwork(text) {
  el.network.textContent = text;
}

/** @param {SignallingConnection} conn */
function wire(conn) {
  /**
   * @template T
   * @param {string} type
   * @param {(detail: T) => void} handler
   */
  const on = (type, handler) =>
    conn.addEventListener(type, (event) => handler(/** @type {CustomEvent<T>} */ (event).detail));

  on("welcome", (/** @type {WelcomeMessage} */ message) => {
    welcome = message;
    setNetwork("");
    if (message.state === "admitted" || message.state === "in_call") {
      enterCall(t("peerWaiting", "Waiting for your therapist to join…"), "waiting");
    } else if (message.state === "waiting" || message.state === "left") {
      show("waiting");
    }
    // "ended": the `ended` message follows.
  });

  on("waiting", (/** @type {WaitingMessage} */ message) => {
    closeCall();
    show("waiting");
    el.welcomeText.textContent = message.welcome;
    el.welcomeBox.hidden = !message.welcome.trim();
    const status = message.status || t("statusWaiting", "Your therapist will let you in shortly.");
    el.waitingStatus.textContent = sentBack ? t("sentBack", status) : status;
    sentBack = false;
  });

  on("message-to-waiting", (/** @type {MessageToWaitingMessage} */ message) => {
    const item = document.createElement("li");
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = formatTime(now);
    time.className = "message-time";
    const text = document.createElement("span");
    text.className = "message-text";
    text.textContent = message.text;
    item.append(time, " ", text);
    el.messages.append(item);
    el.messagesHeading.hidden = false;
  });

  on("admitted", () => {
    admittedAt = performance.now();
    enterCall(t("admitted", "Your therapist is letting you in…"), "waiting");
  });

  on("sent-back", () => {
    sentBack = true;
    closeCall();
    show("waiting");
    el.waitingStatus.textContent = t("sentBack", "");
  });

  on("peer-joined", () => {
    if (!welcome) return;
    // Back after a dropped connection, with the media still flowing: keep the call.
    if (extras && extras.keepOnPeerJoined(call)) return;
    closeCall();
    enterCall(t("callConnecting", "Connecting…"), "connecting");
    call = new Call({
      connection: conn,
      iceServers: welcome.iceServers,
      polite: welcome.polite,
      localStream: media.stream,
      remoteVideo: el.remoteVideo,
    });
    call.addEventListener("statechange", (event) => {
      const state = /** @type {CustomEvent<{state: CallState}>} */ (event).detail.state;
      stateLine.render(state);
      if (state === "connected" && admittedAt !== null) {
        // For the operators' admit-to-connected metric: a number, nothing about the client.
        const ms = Math.min(Math.round(performance.now() - admittedAt), 3_600_000);
        admittedAt = null;
        conn.send(/** @type {any} */ ({ type: "call-connected", admitToConnectedMs: ms }));
      }
    });
    call.addEventListener("remotestream", () => {
      el.remotePlaceholder.hidden = true;
      if (speakerId) setSpeaker([el.remoteVideo], speakerId);
    });
    call.addEventListener("autoplayblocked", () => {
      el.playRemote.hidden = false;
    });
    if (extras) extras.callStarted(call);
    call.start();
  });

  on("peer-left", () => {
    const away = () => {
      closeCall();
      stateLine.say(t("peerLeft", "Your therapist has left the call for a moment."), "waiting");
    };
    if (extras) extras.peerLeft(call, away);
    else away();
  });

  on("ended", () => finish("ended"));

  on("error", (/** @type {import("./protocol.js").ErrorMessage} */ message) => {
    console.warn("signalling error:", message.error, message.value);
  });

  on("statechange", (/** @type {{state: string}} */ { state }) => {
    if (state === "reconnecting" && !finished) setNetwork(t("networkReconnecting", "Reconnecting…"));
  });

  on("close", (/** @type {CloseDetail} */ detail) => {
    if (detail.willReconnect) return;
    setNetwork("");
    if (detail.code === CLOSE_ENDED) finish("ended");
    else if (detail.code === CLOSE_REPLACED) finish("replaced");
    else if (leaving) finish("left");
    else if (detail.code === CLOSE_POLICY_VIOLATION) finish("trouble");
  });
}

/**
 * @param {"ended" | "replaced" | "left" | "trouble"} section
 */
function finish(section) {
  if (finished && section !== "ended") return;
  finished = true;
  closeCall();
  media.stop(); // the camera light goes off
  if (connection && connection.state !== "closed") connection.close();
  setNetwork("");
  show(section);
}

// ---------------------------------------------------------------------------------------
// Call

/**
 * @param {string} text
 * @param {string} state
 */
function enterCall(text, state) {
  show("call");
  if (!call) {
    stateLine.say(text, state);
    el.remotePlaceholder.hidden = false;
  }
}

function closeCall() {
  if (call) {
    call.close();
    call = null;
  }
  if (extras) extras.callClosed();
  el.remotePlaceholder.hidden = false;
  el.playRemote.hidden = true;
}

el.leave.addEventListener("click", () => {
  leaving = true;
  closeCall();
  if (!connection || !connection.send({ type: "leave" })) {
    finish("left");
  }
  // Otherwise the server closes the socket; the close handler shows the "left" section.
  setTimeout(() => {
    if (!finished) finish("left");
  }, 2000);
});

el.playRemote.addEventListener("click", async () => {
  el.playRemote.hidden = true;
  if (call) await call.playRemote();
});

// ---------------------------------------------------------------------------------------
// Coming back

async function comeBack() {
  show("waiting");
  el.waitingStatus.textContent = t("connecting", "Connecting…");
  setPressed(el.mute, false);
  setPressed(el.camera, false);
  media.setEnabled("microphone", true);
  media.setEnabled("camera", true);
  connect();
  await startDevices();
}

el.rejoin.addEventListener("click", comeBack);
el.useHere.addEventListener("click", comeBack);
el.tryAgain.addEventListener("click", comeBack);

el.join.addEventListener("click", () => {
  show("waiting");
  el.waitingStatus.textContent = t("connecting", "Connecting…");
  connect();
});

startDevices();
