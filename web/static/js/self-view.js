// @ts-check
// One's own camera and microphone during a call, the same on the therapist's and the client's
// page: the mute and camera buttons, and the line under the self view that says what the
// other person is not getting. No protocol here.

import { setPressed } from "./ui.js";

/** @typedef {import("./devices.js").LocalMedia} LocalMedia */
/** @typedef {import("./devices.js").DeviceKind} DeviceKind */

/**
 * @typedef {{mute: HTMLButtonElement, camera: HTMLButtonElement, selfState: HTMLElement,
 *   localVideo: HTMLElement}} SelfViewElements
 */

/**
 * What the line under the self view says, as keys of the page's strings, in order.
 * @param {{hasMic: boolean, hasCamera: boolean, muted: boolean, cameraOff: boolean,
 *   noMicNoted: boolean, noCameraNoted: boolean}} state  `no…Noted`: a missing device is
 *   worth saying (the page may already say why elsewhere)
 * @returns {string[]}
 */
export function selfNotes({ hasMic, hasCamera, muted, cameraOff, noMicNoted, noCameraNoted }) {
  const notes = [];
  if (!hasMic && noMicNoted) notes.push("noMicrophone");
  if (!hasCamera && noCameraNoted) notes.push("noCamera");
  if (hasMic && hasCamera && muted && cameraOff) notes.push("selfMutedCameraOff");
  else {
    if (hasMic && muted) notes.push("selfMuted");
    if (hasCamera && cameraOff) notes.push("selfCameraOff");
  }
  return notes;
}

/**
 * Bind the mute and camera buttons to `media`; returns the function that shows the self
 * view's state again (after the devices change, say).
 * @param {SelfViewElements} el
 * @param {LocalMedia} media
 * @param {(key: string, fallback: string) => string} t
 * @param {{noted?: (kind: DeviceKind) => boolean}} [options]  whether a missing device is
 *   worth a note (always, by default)
 * @returns {() => void}
 */
export function bindSelfView(el, media, t, { noted = () => true } = {}) {
  const render = () => {
    const muted = el.mute.getAttribute("aria-pressed") === "true";
    const cameraOff = el.camera.getAttribute("aria-pressed") === "true";
    const hasMic = Boolean(media.track("microphone"));
    const hasCamera = Boolean(media.track("camera"));
    el.mute.disabled = !hasMic;
    el.camera.disabled = !hasCamera;
    const notes = selfNotes({
      hasMic,
      hasCamera,
      muted,
      cameraOff,
      noMicNoted: noted("microphone"),
      noCameraNoted: noted("camera"),
    });
    el.selfState.textContent = notes
      .map((key) => t(key, ""))
      .filter(Boolean)
      .join(" ");
    el.localVideo.classList.toggle("is-off", cameraOff || !hasCamera);
  };
  el.mute.addEventListener("click", () => {
    const muted = el.mute.getAttribute("aria-pressed") !== "true";
    setPressed(el.mute, muted);
    media.setEnabled("microphone", !muted);
    render();
  });
  el.camera.addEventListener("click", () => {
    const off = el.camera.getAttribute("aria-pressed") !== "true";
    setPressed(el.camera, off);
    media.setEnabled("camera", !off);
    render();
  });
  return render;
}
