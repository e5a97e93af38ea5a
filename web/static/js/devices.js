// @ts-check
// Camera, microphone and speaker: acquiring them, classifying what went wrong, the level
// meter, the pickers and the per-browser permission help. The pages wire these together
// (waiting.js for the client, therapist-call.js for the therapist).

/** @typedef {import("./protocol.js").DeviceStatus} DeviceStatus */
/** @typedef {import("./protocol.js").DeviceSummary} DeviceSummary */
/** @typedef {"camera" | "microphone"} DeviceKind */
/**
 * Why a device is not usable: `denied` (permission refused), `missing` (no such device),
 * `busy` (in use elsewhere or a hardware error), `unsupported` (no getUserMedia here: old
 * browser or not a secure page), `failed` (anything else).
 * @typedef {"denied" | "missing" | "busy" | "unsupported" | "failed"} Problem
 */
/** @typedef {{status: DeviceStatus, problem: Problem | null}} DeviceCheck */
/** @typedef {{deviceId: string, label: string}} DeviceOption */

/** @type {Record<DeviceKind, "video" | "audio">} */
const MEDIA_KIND = { camera: "video", microphone: "audio" };

const VIDEO_CONSTRAINTS = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

// ---------------------------------------------------------------------------------------
// Capabilities and classification

export function mediaSupported() {
  return Boolean(navigator.mediaDevices && typeof navigator.mediaDevices.getUserMedia === "function");
}

/** Whether this browser can choose the speaker (`HTMLMediaElement.setSinkId`). */
export function speakerSelectionSupported() {
  return typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;
}

/**
 * Map a getUserMedia failure to the summary status and a more precise problem.
 * NotAllowedError → denied; NotFoundError, OverconstrainedError or no device → missing.
 * @param {unknown} error
 * @returns {DeviceCheck}
 */
export function classifyMediaError(error) {
  const name = error && typeof error === "object" && "name" in error ? String(error.name) : "";
  switch (name) {
    case "NotAllowedError":
    case "PermissionDeniedError": // old Chrome
    case "SecurityError":
      return { status: "denied", problem: "denied" };
    case "NotFoundError":
    case "DevicesNotFoundError": // old Chrome
    case "OverconstrainedError":
    case "ConstraintNotSatisfiedError":
      return { status: "missing", problem: "missing" };
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return { status: "missing", problem: "busy" };
    default:
      return { status: "missing", problem: "failed" };
  }
}

/**
 * Which browser family this is, for permission help.
 * @param {string} [ua]
 * @param {number} [touchPoints]
 * @returns {"ios" | "samsung" | "android" | "firefox" | "edge" | "chrome" | "safari" | "other"}
 */
export function detectBrowser(ua = navigator.userAgent, touchPoints = navigator.maxTouchPoints || 0) {
  // iPadOS presents itself as a Mac; a Mac with a touch screen is an iPad.
  if (/iPhone|iPad|iPod/.test(ua) || (/Macintosh/.test(ua) && touchPoints > 1)) return "ios";
  if (/Android/.test(ua)) return /SamsungBrowser/.test(ua) ? "samsung" : "android";
  if (/Firefox\//.test(ua)) return "firefox";
  if (/Edg\//.test(ua)) return "edge";
  if (/Chrome\/|Chromium\//.test(ua)) return "chrome";
  if (/Safari\//.test(ua) && /Macintosh/.test(ua)) return "safari";
  return "other";
}

/**
 * The `data-help` key of the page's <template> with the matching steps.
 * @param {ReturnType<typeof detectBrowser>} browser
 * @returns {"chrome" | "firefox" | "ios" | "safari" | "android" | "other"}
 */
export function helpKeyFor(browser) {
  switch (browser) {
    case "chrome":
    case "edge":
      return "chrome";
    case "samsung":
    case "android":
      return "android";
    default:
      return browser;
  }
}

/**
 * Put the matching permission-help steps (`<template data-help="…">` on the page) into
 * `container`, replacing what was there. Falls back to `data-help="other"`.
 * @param {HTMLElement} container
 * @param {string} [key]
 */
export function showPermissionHelp(container, key = helpKeyFor(detectBrowser())) {
  const template =
    document.querySelector(`template[data-help="${key}"]`) || document.querySelector('template[data-help="other"]');
  container.replaceChildren();
  if (template instanceof HTMLTemplateElement) {
    container.append(template.content.cloneNode(true));
  }
}

// ---------------------------------------------------------------------------------------
// Acquiring devices

/**
 * @param {DeviceKind} kind
 * @param {string} deviceId  empty for the default device
 */
function constraintsFor(kind, deviceId) {
  const base = kind === "camera" ? VIDEO_CONSTRAINTS : AUDIO_CONSTRAINTS;
  const extra = deviceId ? { deviceId: { exact: deviceId } } : kind === "camera" ? { facingMode: "user" } : {};
  return { ...base, ...extra };
}

/**
 * One track of `kind`, or the reason there is none. A chosen device that has gone away
 * falls back to the default one.
 * @param {DeviceKind} kind
 * @param {string} [deviceId]
 * @returns {Promise<{track: MediaStreamTrack | null, check: DeviceCheck}>}
 */
export async function acquireTrack(kind, deviceId = "") {
  if (!mediaSupported()) return { track: null, check: { status: "missing", problem: "unsupported" } };
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [MEDIA_KIND[kind]]: constraintsFor(kind, deviceId) });
    const track = stream.getTracks()[0] || null;
    return track ? { track, check: { status: "ok", problem: null } } : { track: null, check: { status: "missing", problem: "missing" } };
  } catch (error) {
    const check = classifyMediaError(error);
    if (deviceId && check.status === "missing") return acquireTrack(kind, "");
    return { track: null, check };
  }
}

/**
 * Camera and microphone together (one permission prompt where the browser allows it); when
 * that fails, each on its own, so one missing or refused device does not cost the other.
 * @param {{cameraId?: string, microphoneId?: string, camera?: boolean, microphone?: boolean}} [options]
 * @returns {Promise<{tracks: Partial<Record<DeviceKind, MediaStreamTrack>>, checks: Record<DeviceKind, DeviceCheck>}>}
 */
export async function acquireMedia({ cameraId = "", microphoneId = "", camera = true, microphone = true } = {}) {
  /** @type {Record<DeviceKind, DeviceCheck>} */
  const checks = {
    camera: { status: "missing", problem: camera ? "failed" : null },
    microphone: { status: "missing", problem: microphone ? "failed" : null },
  };
  /** @type {Partial<Record<DeviceKind, MediaStreamTrack>>} */
  const tracks = {};
  if (!mediaSupported()) {
    for (const kind of /** @type {DeviceKind[]} */ (["camera", "microphone"])) {
      checks[kind] = { status: "missing", problem: "unsupported" };
    }
    return { tracks, checks };
  }
  if (camera && microphone) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        video: constraintsFor("camera", cameraId),
        audio: constraintsFor("microphone", microphoneId),
      });
      const video = stream.getVideoTracks()[0];
      const audio = stream.getAudioTracks()[0];
      if (video && audio) {
        return {
          tracks: { camera: video, microphone: audio },
          checks: { camera: { status: "ok", problem: null }, microphone: { status: "ok", problem: null } },
        };
      }
      stream.getTracks().forEach((track) => track.stop());
    } catch {
      // Fall through: find out device by device.
    }
  }
  for (const kind of /** @type {DeviceKind[]} */ (["microphone", "camera"])) {
    if (kind === "camera" ? !camera : !microphone) continue;
    const result = await acquireTrack(kind, kind === "camera" ? cameraId : microphoneId);
    checks[kind] = result.check;
    if (result.track) tracks[kind] = result.track;
  }
  return { tracks, checks };
}

/**
 * The cameras, microphones and speakers the browser lists. Labels are empty until the page
 * has been given permission.
 * @returns {Promise<Record<"cameras" | "microphones" | "speakers", DeviceOption[]>>}
 */
export async function listDevices() {
  /** @type {Record<"cameras" | "microphones" | "speakers", DeviceOption[]>} */
  const lists = { cameras: [], microphones: [], speakers: [] };
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.enumerateDevices !== "function") return lists;
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch {
    return lists;
  }
  for (const device of devices) {
    if (!device.deviceId) continue; // not yet permitted: nothing to choose between
    const option = { deviceId: device.deviceId, label: device.label };
    if (device.kind === "videoinput") lists.cameras.push(option);
    else if (device.kind === "audioinput") lists.microphones.push(option);
    else if (device.kind === "audiooutput") lists.speakers.push(option);
  }
  return lists;
}

/**
 * Stop every track of `stream`.
 * @param {MediaStream | null | undefined} stream
 */
export function stopStream(stream) {
  if (stream) stream.getTracks().forEach((track) => track.stop());
}

/**
 * The summary sent in `hello`.
 * @param {Record<DeviceKind, DeviceCheck>} checks
 * @returns {DeviceSummary}
 */
export function deviceSummary(checks) {
  return { camera: checks.camera.status, microphone: checks.microphone.status };
}

/**
 * The participant's own camera and microphone as one MediaStream whose tracks can be swapped
 * (another device, a device unplugged). Dispatches `change` whenever the stream's tracks or
 * the checks change; `detail` = `{stream, checks}`.
 */
export class LocalMedia extends EventTarget {
  /** The stream shown in the self views and sent in the call; its tracks may change. */
  stream = new MediaStream();
  /** @type {Record<DeviceKind, DeviceCheck>} */
  checks = {
    camera: { status: "missing", problem: null },
    microphone: { status: "missing", problem: null },
  };
  /** @type {Record<DeviceKind, string>} */
  selected = { camera: "", microphone: "" };
  /** Whether each kind is switched on (false: muted / camera off); kept across device switches. */
  enabled = { camera: true, microphone: true };
  #stopped = false;
  /** @type {Set<MediaStreamTrack>} */
  #stoppingOnPurpose = new Set();

  /** Ask for both devices. Safe to call again ("Try again"): only what is missing is asked for. */
  async start() {
    this.#stopped = false;
    const want = {
      camera: !this.track("camera"),
      microphone: !this.track("microphone"),
    };
    if (!want.camera && !want.microphone) return;
    const { tracks, checks } = await acquireMedia({
      cameraId: this.selected.camera,
      microphoneId: this.selected.microphone,
      ...want,
    });
    if (this.#stopped) {
      Object.values(tracks).forEach((track) => track && track.stop());
      return;
    }
    for (const kind of /** @type {DeviceKind[]} */ (["camera", "microphone"])) {
      if (!want[kind]) continue;
      this.checks[kind] = checks[kind];
      const track = tracks[kind];
      if (track) this.#put(kind, track);
    }
    this.#changed();
    this.#watchPermissions();
  }

  /**
   * The current track of `kind`, if any.
   * @param {DeviceKind} kind
   */
  track(kind) {
    const tracks = kind === "camera" ? this.stream.getVideoTracks() : this.stream.getAudioTracks();
    return tracks.find((track) => track.readyState === "live") || null;
  }

  /** The device id in use for `kind` ("" if unknown).
   * @param {DeviceKind} kind */
  currentDeviceId(kind) {
    const track = this.track(kind);
    const settings = track && typeof track.getSettings === "function" ? track.getSettings() : {};
    return settings.deviceId || this.selected[kind] || "";
  }

  /**
   * Switch `kind` to another device: the old track is stopped first (phones cannot open two
   * cameras at once), then the new one is acquired.
   * @param {DeviceKind} kind
   * @param {string} deviceId
   */
  async switchDevice(kind, deviceId) {
    this.selected[kind] = deviceId;
    const old = this.track(kind);
    if (old) {
      this.#stoppingOnPurpose.add(old);
      old.stop();
      this.stream.removeTrack(old);
    }
    const { track, check } = await acquireTrack(kind, deviceId);
    if (this.#stopped) {
      if (track) track.stop();
      return;
    }
    this.checks[kind] = check;
    if (track) this.#put(kind, track);
    this.#changed();
  }

  /**
   * Mute / unmute the microphone, or turn the camera off / on (`track.enabled`: the device
   * stays open, so turning it back on is instant).
   * @param {DeviceKind} kind
   * @param {boolean} enabled
   */
  setEnabled(kind, enabled) {
    this.enabled[kind] = enabled;
    const track = this.track(kind);
    if (track) track.enabled = enabled;
  }

  /** @returns {DeviceSummary} */
  summary() {
    return deviceSummary(this.checks);
  }

  /** Release the camera and microphone (the camera light goes off). */
  stop() {
    this.#stopped = true;
    for (const track of this.stream.getTracks()) {
      this.#stoppingOnPurpose.add(track);
      track.stop();
      this.stream.removeTrack(track);
    }
    this.#changed();
  }

  /**
   * @param {DeviceKind} kind
   * @param {MediaStreamTrack} track
   */
  #put(kind, track) {
    const previous = this.track(kind);
    if (previous && previous !== track) {
      this.#stoppingOnPurpose.add(previous);
      previous.stop();
      this.stream.removeTrack(previous);
    }
    // Keep a muted microphone muted, a camera that is off off, across device switches.
    track.enabled = this.enabled[kind];
    this.stream.addTrack(track);
    track.addEventListener("ended", () => {
      if (this.#stoppingOnPurpose.has(track) || this.#stopped) return;
      // Unplugged or taken away by the system: fall back to the default device.
      this.stream.removeTrack(track);
      this.switchDevice(kind, "");
    });
  }

  #changed() {
    this.dispatchEvent(new CustomEvent("change", { detail: { stream: this.stream, checks: this.checks } }));
  }

  #permissionsWatched = false;

  /** When the user allows a refused device in the browser's settings, pick it up. */
  #watchPermissions() {
    if (this.#permissionsWatched || !navigator.permissions) return;
    this.#permissionsWatched = true;
    for (const kind of /** @type {DeviceKind[]} */ (["camera", "microphone"])) {
      navigator.permissions
        .query(/** @type {PermissionDescriptor} */ ({ name: kind }))
        .then((status) => {
          status.addEventListener("change", () => {
            if (status.state === "granted" && !this.track(kind) && !this.#stopped) this.start();
          });
        })
        .catch(() => {
          // This browser cannot query that permission; "Try again" still works.
        });
    }
  }
}

// ---------------------------------------------------------------------------------------
// Pickers

/**
 * Fill a <select> with devices, keeping `selectedId` selected when it is still there.
 * @param {HTMLSelectElement} select
 * @param {DeviceOption[]} devices
 * @param {string} selectedId
 * @param {string} unnamedLabel  e.g. "Camera {number}", for devices without a label
 * @param {string} noneLabel     shown (disabled) when there is nothing to choose
 */
export function fillPicker(select, devices, selectedId, unnamedLabel, noneLabel) {
  select.replaceChildren();
  if (devices.length === 0) {
    const option = document.createElement("option");
    option.value = "";
    option.textContent = noneLabel;
    select.append(option);
    select.disabled = true;
    return;
  }
  devices.forEach((device, index) => {
    const option = document.createElement("option");
    option.value = device.deviceId;
    option.textContent = device.label || unnamedLabel.replace("{number}", String(index + 1));
    if (device.deviceId === selectedId) option.selected = true;
    select.append(option);
  });
  select.disabled = false;
}

/**
 * Route the sound of `elements` to a speaker, where the browser can.
 * @param {HTMLMediaElement[]} elements
 * @param {string} deviceId
 */
export async function setSpeaker(elements, deviceId) {
  if (!speakerSelectionSupported()) return false;
  try {
    await Promise.all(
      elements.map((element) => /** @type {any} */ (element).setSinkId(deviceId)),
    );
    return true;
  } catch {
    return false;
  }
}

/**
 * @typedef {object} PickerElements
 * @property {HTMLSelectElement} camera
 * @property {HTMLSelectElement} microphone
 * @property {HTMLSelectElement | null} [speaker]
 * @property {HTMLElement | null} [speakerField]  shown only where the speaker can be chosen
 * @property {HTMLElement | null} [speakerNote]   shown instead elsewhere
 */
/**
 * @typedef {object} PickerLabels
 * @property {string} camera      "Camera {number}"
 * @property {string} microphone  "Microphone {number}"
 * @property {string} speaker     "Speaker {number}"
 * @property {string} none        "None found"
 * @property {string} [defaultSpeaker]  "Default speaker"
 */

/**
 * Wire camera / microphone / speaker pickers to `media`. Choosing a camera or microphone
 * re-acquires that device; choosing a speaker calls `onSpeaker(deviceId)`. The lists are
 * refreshed when devices come and go and whenever `media` changes (labels appear once
 * permission is given).
 * @param {LocalMedia} media
 * @param {PickerElements} elements
 * @param {PickerLabels} labels
 * @param {(deviceId: string) => void} [onSpeaker]
 */
export function bindPickers(media, elements, labels, onSpeaker) {
  const canPickSpeaker = speakerSelectionSupported();
  if (elements.speakerField) elements.speakerField.hidden = !canPickSpeaker;
  if (elements.speakerNote) elements.speakerNote.hidden = canPickSpeaker;
  let speakerId = "";

  const refresh = async () => {
    const lists = await listDevices();
    fillPicker(elements.camera, lists.cameras, media.currentDeviceId("camera"), labels.camera, labels.none);
    fillPicker(elements.microphone, lists.microphones, media.currentDeviceId("microphone"), labels.microphone, labels.none);
    if (canPickSpeaker && elements.speaker) {
      const speakers = lists.speakers.length
        ? lists.speakers
        : [{ deviceId: "", label: labels.defaultSpeaker || "" }];
      fillPicker(elements.speaker, speakers, speakerId || "default", labels.speaker, labels.none);
    }
  };

  elements.camera.addEventListener("change", () => media.switchDevice("camera", elements.camera.value));
  elements.microphone.addEventListener("change", () => media.switchDevice("microphone", elements.microphone.value));
  if (elements.speaker) {
    const speaker = elements.speaker;
    speaker.addEventListener("change", () => {
      speakerId = speaker.value;
      if (onSpeaker) onSpeaker(speakerId);
    });
  }
  media.addEventListener("change", refresh);
  if (navigator.mediaDevices && "addEventListener" in navigator.mediaDevices) {
    navigator.mediaDevices.addEventListener("devicechange", refresh);
  }
  refresh();
  return { refresh, speakerId: () => speakerId };
}

// ---------------------------------------------------------------------------------------
// Microphone level meter

/**
 * Show the microphone's level in `meter` (an element with role="meter", aria-valuemin 0,
 * aria-valuemax 100) and, visually, as the width of `fill`. Returns a stop function.
 * @param {MediaStreamTrack} track
 * @param {HTMLElement} meter
 * @param {HTMLElement} fill
 * @param {(level: number) => void} [onLevel]  called with 0–100 a few times a second
 */
export function createLevelMeter(track, meter, fill, onLevel) {
  const AudioContextClass = window.AudioContext || /** @type {any} */ (window).webkitAudioContext;
  if (!AudioContextClass) return () => {};
  /** @type {AudioContext} */
  const context = new AudioContextClass();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  analyser.smoothingTimeConstant = 0.3;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let shown = 0;
  let lastReported = 0;
  let frame = 0;
  let stopped = false;

  // Audio may only start after a user gesture in some browsers.
  const resume = () => {
    if (context.state === "suspended") context.resume().catch(() => {});
  };
  resume();
  document.addEventListener("pointerdown", resume);
  document.addEventListener("keydown", resume);

  const tick = () => {
    if (stopped) return;
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const sample of samples) sum += sample * sample;
    const rms = Math.sqrt(sum / samples.length);
    const decibels = rms > 0 ? 20 * Math.log10(rms) : -100;
    const level = Math.max(0, Math.min(100, ((decibels + 60) / 60) * 100)); // -60 dB → 0, 0 dB → 100
    shown = Math.max(level, shown * 0.85);
    fill.style.width = `${shown.toFixed(1)}%`; // CSSOM, allowed by the CSP
    const now = performance.now();
    if (now - lastReported > 250) {
      lastReported = now;
      const value = String(Math.round(shown));
      if (meter.getAttribute("aria-valuenow") !== value) meter.setAttribute("aria-valuenow", value);
      if (onLevel) onLevel(shown);
    }
    frame = requestAnimationFrame(tick);
  };
  frame = requestAnimationFrame(tick);

  return () => {
    stopped = true;
    cancelAnimationFrame(frame);
    document.removeEventListener("pointerdown", resume);
    document.removeEventListener("keydown", resume);
    source.disconnect();
    context.close().catch(() => {});
    fill.style.width = "0%";
    meter.setAttribute("aria-valuenow", "0");
  };
}

// ---------------------------------------------------------------------------------------
// Speaker test

/** A short, soft two-note WAV, built in memory (no audio file to fetch). */
function testSoundUrl() {
  const rate = 22050;
  const notes = [523.25, 659.25]; // C5, E5
  const noteLength = Math.floor(rate * 0.35);
  const length = noteLength * notes.length;
  const buffer = new ArrayBuffer(44 + length * 2);
  const view = new DataView(buffer);
  const text = (/** @type {number} */ offset, /** @type {string} */ value) =>
    [...value].forEach((char, i) => view.setUint8(offset + i, char.charCodeAt(0)));
  text(0, "RIFF");
  view.setUint32(4, 36 + length * 2, true);
  text(8, "WAVE");
  text(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, "data");
  view.setUint32(40, length * 2, true);
  for (let i = 0; i < length; i++) {
    const note = notes[Math.floor(i / noteLength)];
    const t = (i % noteLength) / noteLength;
    const envelope = Math.min(1, t * 20) * (1 - t) ** 2;
    const sample = Math.sin((2 * Math.PI * note * i) / rate) * envelope * 0.35;
    view.setInt16(44 + i * 2, Math.round(sample * 32767), true);
  }
  return URL.createObjectURL(new Blob([buffer], { type: "audio/wav" }));
}

/**
 * Play a short test sound through the chosen speaker ("" = the default one).
 * @param {string} [sinkId]
 */
export async function playTestSound(sinkId = "") {
  const url = testSoundUrl();
  const audio = new Audio(url);
  const cleanup = () => URL.revokeObjectURL(url);
  audio.addEventListener("ended", cleanup, { once: true });
  try {
    if (sinkId && speakerSelectionSupported()) await /** @type {any} */ (audio).setSinkId(sinkId);
    await audio.play();
  } catch {
    cleanup();
  }
}

/**
 * Wire a page's standard camera, microphone and speaker pickers, labelled with the page's
 * translated strings.
 * @param {LocalMedia} media
 * @param {{cameraSelect: HTMLSelectElement, microphoneSelect: HTMLSelectElement,
 *   speakerSelect: HTMLSelectElement, speakerField?: HTMLElement | null,
 *   speakerNote?: HTMLElement | null}} el
 * @param {(key: string, fallback: string) => string} t
 * @param {(deviceId: string) => void} [onSpeaker]
 */
export function bindPagePickers(media, el, t, onSpeaker) {
  bindPickers(
    media,
    {
      camera: el.cameraSelect,
      microphone: el.microphoneSelect,
      speaker: el.speakerSelect,
      speakerField: el.speakerField,
      speakerNote: el.speakerNote,
    },
    {
      camera: t("unnamedCamera", "Camera {number}"),
      microphone: t("unnamedMicrophone", "Microphone {number}"),
      speaker: t("unnamedSpeaker", "Speaker {number}"),
      none: t("noneFound", "None found"),
      defaultSpeaker: t("defaultSpeaker", "Default speaker"),
    },
    onSpeaker,
  );
}
