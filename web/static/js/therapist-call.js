// @ts-check
// The therapist's call page (call.html): one appointment's call, with the client's status
// from the lobby, and the therapist's controls (admit, send back, end, leave).

import "./localtime.js";
import { SignallingConnection, CLOSE_ENDED, CLOSE_POLICY_VIOLATION, CLOSE_REPLACED } from "./protocol.js";
import { LocalMedia, bindPagePickers, setSpeaker } from "./devices.js";
import { Call } from "./call.js";
import { mountCallExtrasSafely } from "./call-extras.js";
import { callStateLine } from "./call-state.js";
import { bindSelfView } from "./self-view.js";
import { announce, attachStream, byId, showSection, stringsFrom, twoStep } from "./ui.js";

/** @typedef {import("./protocol.js").WelcomeMessage} WelcomeMessage */
/** @typedef {import("./protocol.js").LobbyMessage} LobbyMessage */
/** @typedef {import("./protocol.js").LobbyEntry} LobbyEntry */
/** @typedef {import("./protocol.js").PeerJoinedMessage} PeerJoinedMessage */
/** @typedef {import("./protocol.js").ErrorMessage} ErrorMessage */
/** @typedef {import("./protocol.js").CloseDetail} CloseDetail */
/** @typedef {import("./call.js").CallState} CallState */

const SECTIONS = ["call", "ended", "replaced", "trouble"];
const stringsElement = byId("call-strings");
const t = stringsFrom(stringsElement);
const appointment = stringsElement.dataset.appointment || "";
const clientName = stringsElement.dataset.clientName || "";
/**
 * @param {string} key
 * @param {string} fallback
 */
const tn = (key, fallback) => t(key, fallback, { name: clientName });

const el = {
  network: byId("network-status"),
  announcer: byId("call-announcer"),
  connectionState: byId("connection-state"),
  clientStatus: byId("client-status"),
  admit: byId("admit-client", HTMLButtonElement),
  remoteVideo: byId("remote-video", HTMLVideoElement),
  remotePlaceholder: byId("remote-placeholder"),
  localVideo: byId("local-video", HTMLVideoElement),
  playRemote: byId("play-remote", HTMLButtonElement),
  selfState: byId("self-state"),
  mute: byId("mute", HTMLButtonElement),
  camera: byId("camera", HTMLButtonElement),
  sendBack: byId("send-back", HTMLButtonElement),
  end: byId("end-session", HTMLButtonElement),
  leave: byId("leave", HTMLButtonElement),
  deviceProblem: byId("device-problem"),
  retry: byId("retry-devices", HTMLButtonElement),
  cameraSelect: byId("camera-select", HTMLSelectElement),
  microphoneSelect: byId("microphone-select", HTMLSelectElement),
  speakerSelect: byId("speaker-select", HTMLSelectElement),
  speakerField: byId("speaker-field"),
  speakerNote: byId("speaker-note"),
  useHere: byId("use-here", HTMLButtonElement),
  tryAgain: byId("try-again", HTMLButtonElement),
};
const stateLine = callStateLine(el.connectionState, t);

const media = new LocalMedia();
// A missing device is said under the self view only if the check found why.
const renderSelfState = bindSelfView(el, media, t, { noted: (kind) => Boolean(media.checks[kind].problem) });
/** @type {WelcomeMessage | null} */
let welcome = null;
/** @type {Call | null} */
let call = null;
/** The client of this appointment, as the lobby last described them. @type {LobbyEntry | null} */
let client = null;
/** The client's participant id, from the lobby or from peer-joined. */
let clientId = "";
let speakerId = "";
let leaving = false;
let finished = false;
/** Ids of our requests, to recognise an error in answer to one. @type {Set<string>} */
const pending = new Set();

const connection = new SignallingConnection({
  hello: () => ({ version: 1, appointment }),
});
/** Reconnecting, audio only, screen sharing, quality, timer and chat (call-extras.js). */
const extras = mountCallExtrasSafely({ connection, media, appointment });

/**
 * @template T
 * @param {string} type
 * @param {(detail: T) => void} handler
 */
function on(type, handler) {
  connection.addEventListener(type, (event) => handler(/** @type {CustomEvent<T>} */ (event).detail));
}

// ---------------------------------------------------------------------------------------
// Devices

function renderDevices() {
  el.localVideo.srcObject = null;
  attachStream(el.localVideo, media.stream.getTracks().length ? media.stream : null);
  const problems = [];
  if (media.checks.camera.status !== "ok" && media.checks.camera.problem) {
    problems.push(t("cameraProblem", "Your camera is not available."));
  }
  if (media.checks.microphone.status !== "ok" && media.checks.microphone.problem) {
    problems.push(t("microphoneProblem", "Your microphone is not available."));
  }
  el.deviceProblem.textContent = problems.join(" ");
  el.deviceProblem.hidden = problems.length === 0;
  el.retry.hidden = problems.length === 0;
  if (problems.length) {
    const details = el.deviceProblem.closest("details");
    if (details) details.open = true;
  }
  if (call) call.setLocalStream(media.stream);
  renderSelfState();
}

media.addEventListener("change", renderDevices);
bindPagePickers(media, el, t, (deviceId) => {
  speakerId = deviceId;
  setSpeaker([el.remoteVideo], deviceId);
});
el.retry.addEventListener("click", () => media.start());

// ---------------------------------------------------------------------------------------
// The client's status

function renderClient() {
  let text;
  if (!client) text = tn("clientAbsent", "{name} is not in the waiting room yet.");
  else if (client.state === "waiting") text = tn("clientWaiting", "{name} is in the waiting room.");
  else if (!client.online) text = tn("clientOffline", "{name} is not connected right now.");
  else if (client.state === "in_call") text = tn("clientInCall", "{name} is in the call.");
  else text = tn("clientAdmitted", "{name} has been let in and is joining…");
  if (el.clientStatus.textContent !== text) el.clientStatus.textContent = text;
  const admitVisible = Boolean(client && client.state === "waiting" && client.online);
  if (el.admit.hidden !== !admitVisible) el.admit.hidden = !admitVisible;
  if (!admitVisible) el.admit.disabled = false;
  el.sendBack.hidden = !(client && (client.state === "admitted" || client.state === "in_call"));
}

function closeCall() {
  if (call) {
    call.close();
    call = null;
  }
  extras.callClosed();
  el.remotePlaceholder.hidden = false;
  el.playRemote.hidden = true;
  stateLine.say(tn("peerWaiting", "Waiting for {name} to join…"), "waiting");
}

// ---------------------------------------------------------------------------------------
// Signalling

on("welcome", (/** @type {WelcomeMessage} */ message) => {
  welcome = message;
  el.network.textContent = "";
  if (!call) stateLine.say(tn("peerWaiting", "Waiting for {name} to join…"), "waiting");
});

on("lobby", (/** @type {LobbyMessage} */ message) => {
  client = message.participants.find((entry) => entry.appointment === appointment) || null;
  if (client) clientId = client.participant;
  renderClient();
});

on("peer-joined", (/** @type {PeerJoinedMessage} */ message) => {
  if (!welcome) return;
  if (message.role === "client") clientId = message.participant;
  // Back after a dropped connection, with the media still flowing: keep the call.
  if (extras.keepOnPeerJoined(call)) return;
  closeCall();
  stateLine.say(t("callConnecting", "Connecting…"), "connecting");
  call = new Call({
    connection,
    iceServers: welcome.iceServers,
    polite: welcome.polite,
    localStream: media.stream,
    remoteVideo: el.remoteVideo,
  });
  call.addEventListener("statechange", (event) => {
    stateLine.render(/** @type {CustomEvent<{state: CallState}>} */ (event).detail.state);
  });
  call.addEventListener("remotestream", () => {
    el.remotePlaceholder.hidden = true;
    if (speakerId) setSpeaker([el.remoteVideo], speakerId);
  });
  call.addEventListener("autoplayblocked", () => {
    el.playRemote.hidden = false;
  });
  extras.callStarted(call);
  call.start();
});

on("peer-left", () => extras.peerLeft(call, closeCall));

on("ended", () => finish("ended"));

on("error", (/** @type {ErrorMessage} */ message) => {
  console.warn("signalling error:", message.error, message.value);
  if (message.id && pending.has(message.id)) {
    pending.delete(message.id);
    el.admit.disabled = false;
    el.sendBack.disabled = false;
    announce(el.announcer, t("requestFailed", "That did not work."));
    el.network.textContent = t("requestFailed", "That did not work.");
  }
});

on("statechange", (/** @type {{state: string}} */ { state }) => {
  if (state === "reconnecting" && !finished) {
    el.network.textContent = t("networkReconnecting", "Reconnecting…");
  }
});

on("close", (/** @type {CloseDetail} */ detail) => {
  if (detail.willReconnect) return;
  if (leaving) {
    location.assign("/dashboard");
    return;
  }
  el.network.textContent = "";
  if (detail.code === CLOSE_ENDED) finish("ended");
  else if (detail.code === CLOSE_REPLACED) finish("replaced");
  else if (detail.code === CLOSE_POLICY_VIOLATION) finish("trouble");
});

/** @param {"ended" | "replaced" | "trouble"} section */
function finish(section) {
  if (finished && section !== "ended") return;
  finished = true;
  closeCall();
  media.stop();
  if (connection.state !== "closed") connection.close();
  el.network.textContent = "";
  showSection(SECTIONS, section);
}

/** @param {import("./protocol.js").OutgoingMessage} message */
function request(message) {
  const id = connection.request(message);
  if (id) pending.add(id);
  return id;
}

// ---------------------------------------------------------------------------------------
// Controls

el.admit.addEventListener("click", () => {
  if (!client) return;
  if (request({ type: "admit", participant: client.participant })) {
    el.admit.disabled = true;
    announce(el.announcer, tn("admitting", "Letting {name} in…"));
  }
});

el.sendBack.addEventListener("click", () => {
  if (!clientId) return;
  if (request({ type: "send-back", participant: clientId })) {
    announce(el.announcer, tn("sentBack", "{name} is back in the waiting room."));
  }
});

twoStep(el.end, {
  confirmText: t("confirmEnd", "Confirm end"),
  armedAnnouncement: t("confirmEndHint", ""),
  announce: (text) => announce(el.announcer, text),
  action: () => {
    request({ type: "end", appointment });
  },
});

el.leave.addEventListener("click", () => {
  leaving = true;
  closeCall();
  media.stop();
  if (!connection.send({ type: "leave" })) {
    location.assign("/dashboard");
    return;
  }
  // The server closes the socket after `leave`; go back to the dashboard then, or soon anyway.
  setTimeout(() => location.assign("/dashboard"), 1500);
});

el.playRemote.addEventListener("click", async () => {
  el.playRemote.hidden = true;
  if (call) await call.playRemote();
});

function startAgain() {
  finished = false;
  showSection(SECTIONS, "call");
  media.start();
  connection.connect();
}
el.useHere.addEventListener("click", startAgain);
el.tryAgain.addEventListener("click", startAgain);

// ---------------------------------------------------------------------------------------
// Worksheets (worksheet-call.js), loaded on their own: without them the call still works.

/** Mount the worksheet panel; resolves either way, so the call can connect after it. */
async function loadWorksheets() {
  try {
    const { mountCallWorksheet } = await import("./worksheet-call.js");
    mountCallWorksheet({ connection, appointment });
  } catch (error) {
    console.warn("worksheets unavailable:", error);
    byId("call-layout").dataset.worksheet = "closed";
  }
}

// ---------------------------------------------------------------------------------------

media.start();
// Connect once the panel listens, so the `worksheet` that follows `welcome` is not missed.
loadWorksheets().finally(() => connection.connect());
