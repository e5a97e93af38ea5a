// @ts-check
// Everything around the video in a call, on both the therapist's page (therapist-call.js)
// and the client's (waiting.js): keeping the call through a dropped connection, audio only,
// screen sharing, the connection-quality indicator, the session timer, text chat and (on
// the client's page) switching camera or microphone mid-call.
//
// The markup is web/templates/_call_extras.html; its text comes from data attributes
// rendered with gettext. The page tells this module when its Call starts and closes; the
// module never creates or closes a call itself.

import { bindPickers } from "./devices.js";
import { ChatPanel } from "./chat.js";
import { PeerPresence } from "./call-reconnect.js";
import { QualityMonitor } from "./quality.js";
import { ScreenShare, screenShareSupported } from "./screen-share.js";
import { SessionTimer } from "./session-timer.js";
import { announce, byId, setPressed, stringsFrom } from "./ui.js";

/** @typedef {import("./protocol.js").SignallingConnection} SignallingConnection */
/** @typedef {import("./protocol.js").MediaMessage} MediaMessage */
/** @typedef {import("./protocol.js").CloseDetail} CloseDetail */
/** @typedef {import("./call.js").Call} Call */
/** @typedef {import("./call.js").CallState} CallState */
/** @typedef {import("./devices.js").LocalMedia} LocalMedia */
/** @typedef {import("./quality.js").QualitySample} QualitySample */

/**
 * @typedef {object} CallExtras
 * @property {(call: Call) => void} callStarted    a new Call, before `start()`
 * @property {() => void} callClosed               the page closed its Call
 * @property {(call: Call | null) => boolean} keepOnPeerJoined  whether to keep `call` on `peer-joined`
 * @property {(call: Call | null, closeCall: () => void) => void} peerLeft  instead of closing at once
 * @property {() => void} end                      the session is over for this page
 */

/**
 * Mount the extras of the call view.
 * @param {object} options
 * @param {SignallingConnection} options.connection
 * @param {LocalMedia} options.media
 * @param {string} [options.appointment]  the therapist's appointment id (to find the client in the lobby)
 * @returns {CallExtras}
 */
export function mountCallExtras({ connection, media, appointment = "" }) {
  const strings = byId("call-extras-strings");
  const t = stringsFrom(strings);
  const role = strings.dataset.role === "therapist" ? "therapist" : "client";
  const el = {
    presence: byId("peer-presence"),
    announcer: byId("call-extras-announcer"),
    timer: byId("session-timer"),
    elapsed: byId("session-elapsed"),
    ends: byId("session-ends"),
    quality: byId("call-quality"),
    weak: byId("weak-prompt"),
    weakAccept: byId("weak-accept", HTMLButtonElement),
    weakDismiss: byId("weak-dismiss", HTMLButtonElement),
    audioOnly: byId("audio-only", HTMLButtonElement),
    shareScreen: byId("share-screen", HTMLButtonElement),
    chatToggle: byId("chat-toggle", HTMLButtonElement),
    chatUnread: byId("chat-unread"),
    chatPanel: byId("chat-panel"),
    chatLog: byId("chat-log"),
    chatForm: byId("chat-form", HTMLFormElement),
    chatInput: byId("chat-input", HTMLInputElement),
    remoteVideo: byId("remote-video", HTMLVideoElement),
  };

  /** @type {Call | null} */
  let call = null;
  let audioOnly = false;
  /** What the other side says it sends. @type {{video: "on" | "paused", screen: boolean}} */
  let remote = { video: "on", screen: false };

  // The remote video's "paused" overlay lives on the stage the page already has.
  const stage = el.remoteVideo.parentElement;
  const pausedNote = document.createElement("p");
  pausedNote.className = "remote-paused";
  pausedNote.hidden = true;
  pausedNote.textContent = t("videoPaused", "Video paused — audio only");
  if (stage) stage.append(pausedNote);

  // ---- Reconnecting --------------------------------------------------------------------

  // Said where the eye is: under the call's title bar, above the video.
  const bar = document.querySelector("#call .call-bar");
  if (bar) bar.after(el.presence);

  const presence = new PeerPresence({ connection, role, appointment });
  presence.addEventListener("status", (event) => {
    const { status } = /** @type {CustomEvent<{status: string}>} */ (event).detail;
    const text =
      status === "reconnecting" ? t("peerReconnecting", "Reconnecting…") : status === "left" ? t("peerLeft", "") : "";
    el.presence.textContent = text;
    el.presence.dataset.status = status;
  });

  // ---- Media state: audio only and screen sharing ---------------------------------------

  const screen = new ScreenShare();
  el.shareScreen.hidden = !screenShareSupported();

  function applyVideo() {
    quality.setSendingVideo(Boolean(screen.track) || !audioOnly);
    if (call) call.overrideVideo(screen.track ? screen.track : audioOnly ? null : undefined);
    setPressed(el.audioOnly, audioOnly);
    setPressed(el.shareScreen, Boolean(screen.track));
    el.shareScreen.textContent = screen.track ? t("stopSharing", "Stop sharing") : t("shareScreen", "Share screen");
    sendMedia();
  }

  /** Tell the other side what we send; only in a call (the server relays it then). */
  function sendMedia() {
    if (!call) return;
    connection.send({ type: "media", video: audioOnly && !screen.track ? "paused" : "on", screen: Boolean(screen.track) });
  }

  el.audioOnly.addEventListener("click", () => {
    audioOnly = !audioOnly;
    if (audioOnly) screen.stop();
    el.weak.hidden = true;
    applyVideo();
    announce(el.announcer, audioOnly ? t("audioOnlyOn", "") : t("audioOnlyOff", ""));
  });

  el.shareScreen.addEventListener("click", () => {
    if (screen.track) screen.stop();
    else screen.start();
  });
  screen.addEventListener("change", () => {
    if (screen.track) audioOnly = false;
    applyVideo();
    announce(el.announcer, screen.track ? t("sharing", "") : t("sharingStopped", ""));
  });
  screen.addEventListener("problem", (event) => {
    const { error } = /** @type {CustomEvent<{error: unknown}>} */ (event).detail;
    // Cancelling the browser's picker is no problem worth a message.
    if (error instanceof DOMException && error.name === "NotAllowedError") return;
    announce(el.announcer, t("screenFailed", ""));
  });

  connection.addEventListener("media", (event) => {
    const message = /** @type {CustomEvent<MediaMessage>} */ (event).detail;
    remote = { video: message.video, screen: message.screen };
    renderRemote();
  });

  function renderRemote() {
    const paused = Boolean(call) && remote.video === "paused" && !remote.screen;
    pausedNote.hidden = !paused;
    el.remoteVideo.classList.toggle("is-paused", paused);
    el.remoteVideo.classList.toggle("is-screen", remote.screen);
  }

  // ---- Quality -------------------------------------------------------------------------

  const quality = new QualityMonitor();
  quality.addEventListener("sample", (event) => {
    const sample = /** @type {CustomEvent<QualitySample>} */ (event).detail;
    const level = sample.level || "";
    const text = level
      ? t(`quality${level[0].toUpperCase()}${level.slice(1)}`, `Connection: ${level}`)
      : t("qualityUnknown", "");
    if (el.quality.textContent !== text) el.quality.textContent = text;
    el.quality.dataset.level = level;
    el.quality.hidden = !text;
  });
  quality.addEventListener("sustainedpoor", () => {
    if (audioOnly || screen.track || el.weak.dataset.dismissed === "true") return;
    el.weak.hidden = false;
    announce(el.announcer, t("weak", ""));
  });
  el.weakAccept.addEventListener("click", () => {
    el.weak.hidden = true;
    if (!audioOnly) el.audioOnly.click();
  });
  el.weakDismiss.addEventListener("click", () => {
    el.weak.hidden = true;
    el.weak.dataset.dismissed = "true"; // asked once per session is enough
  });

  // ---- Timer ---------------------------------------------------------------------------

  const timer = new SessionTimer({
    root: el.timer,
    elapsed: el.elapsed,
    ends: el.ends,
    end: strings.dataset.end || "",
    endsAt: t("endsAt", "Ends at {time}"),
    labelElapsed: t("elapsed", "{time}"),
  });

  // ---- Chat ----------------------------------------------------------------------------

  const chat = new ChatPanel(
    connection,
    { panel: el.chatPanel, log: el.chatLog, form: el.chatForm, input: el.chatInput, toggle: el.chatToggle, unread: el.chatUnread },
    {
      you: t("chatYou", "You"),
      them: t("chatThem", ""),
      notDelivered: t("chatNotDelivered", "Not delivered — the other person is not connected"),
      unread: t("chatUnread", "{count} unread"),
    },
  );

  // ---- Devices mid-call (the client's page; the therapist's has its own pickers) ----------

  const cameraSelect = document.getElementById("call-camera-select");
  const microphoneSelect = document.getElementById("call-microphone-select");
  if (cameraSelect instanceof HTMLSelectElement && microphoneSelect instanceof HTMLSelectElement) {
    bindPickers(
      media,
      { camera: cameraSelect, microphone: microphoneSelect },
      {
        camera: t("unnamedCamera", "Camera {number}"),
        microphone: t("unnamedMicrophone", "Microphone {number}"),
        speaker: "",
        none: t("noneFound", "None found"),
      },
    );
  }

  // ---- The session ends ----------------------------------------------------------------

  function end() {
    screen.stop();
    quality.watch(null);
    timer.stop();
    chat.clear();
    chat.setOpen(false);
    presence.reset();
    el.presence.textContent = "";
    el.weak.hidden = true;
    audioOnly = false;
    setPressed(el.audioOnly, false);
  }
  connection.addEventListener("ended", end);
  connection.addEventListener("close", (event) => {
    if (!(/** @type {CustomEvent<CloseDetail>} */ (event).detail.willReconnect)) end();
  });
  connection.addEventListener("sent-back", () => {
    screen.stop();
    timer.stop();
  });

  /** @param {Event} event */
  function onCallState(event) {
    const { state } = /** @type {CustomEvent<{state: CallState}>} */ (event).detail;
    if (state === "connected") timer.start();
    // A call that started over has a new peer connection: sample that one.
    if (call) quality.watch(call.peerConnection);
  }

  return {
    callStarted(newCall) {
      call = newCall;
      remote = { video: "on", screen: false };
      renderRemote();
      call.overrideVideo(screen.track ? screen.track : audioOnly ? null : undefined);
      call.addEventListener("statechange", onCallState);
      quality.watch(null);
      // The peer connection exists once start() ran; sample it from the next turn.
      setTimeout(() => {
        if (call === newCall) quality.watch(newCall.peerConnection);
      }, 0);
      sendMedia();
    },
    callClosed() {
      presence.reset();
      if (call) call.removeEventListener("statechange", onCallState);
      call = null;
      quality.watch(null);
      remote = { video: "on", screen: false };
      renderRemote();
    },
    keepOnPeerJoined(current) {
      const keep = presence.peerJoined(current);
      if (keep) sendMedia(); // they may have missed a change while away
      return keep;
    },
    peerLeft(current, closeCall) {
      presence.peerLeft(current, closeCall);
    },
    end,
  };
}

/** @type {CallExtras} */
const NO_EXTRAS = Object.freeze({
  callStarted() {},
  callClosed() {},
  keepOnPeerJoined() {
    return false;
  },
  /** @param {Call | null} _call @param {() => void} closeCall */
  peerLeft(_call, closeCall) {
    closeCall();
  },
  end() {},
});

/**
 * {@link mountCallExtras}, or extras that do nothing when they cannot be mounted (an older
 * template): the call itself must work without them.
 * @param {Parameters<typeof mountCallExtras>[0]} options
 * @returns {CallExtras}
 */
export function mountCallExtrasSafely(options) {
  try {
    return mountCallExtras(options);
  } catch (error) {
    console.warn("call extras unavailable:", error);
    return NO_EXTRAS;
  }
}
