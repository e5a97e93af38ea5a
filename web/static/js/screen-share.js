// @ts-check
// Sharing one's screen in the call. The screen's track takes the camera's place on the
// existing video sender (Call.overrideVideo → replaceTrack), so nothing is renegotiated and
// the call never drops; stopping puts the camera back the same way.

/** Whether this browser can share a screen at all (phones cannot). */
export function screenShareSupported() {
  return Boolean(navigator.mediaDevices && typeof navigator.mediaDevices.getDisplayMedia === "function");
}

/**
 * Events: `change` (`detail.track`: the screen track, or null once sharing stopped),
 * `problem` (`detail.error`: the browser refused or the user cancelled).
 */
export class ScreenShare extends EventTarget {
  /** @type {MediaStreamTrack | null} */
  #track = null;
  #starting = false;

  /** The screen track while sharing, else null. */
  get track() {
    return this.#track;
  }

  /** Ask the browser for a screen, window or tab; the user may cancel. */
  async start() {
    if (this.#track || this.#starting || !screenShareSupported()) return;
    this.#starting = true;
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
      const track = stream.getVideoTracks()[0];
      if (!track) return;
      // Text and slides over movement: the encoder keeps them sharp on a weak link.
      if ("contentHint" in track) track.contentHint = "detail";
      track.addEventListener("ended", () => {
        // The browser's own "Stop sharing" bar, or the shared window closed.
        if (this.#track === track) this.stop();
      });
      this.#track = track;
      this.#emit();
    } catch (error) {
      this.dispatchEvent(new CustomEvent("problem", { detail: { error } }));
    } finally {
      this.#starting = false;
    }
  }

  /** Stop sharing (the camera comes back). */
  stop() {
    const track = this.#track;
    if (!track) return;
    this.#track = null;
    track.stop();
    this.#emit();
  }

  #emit() {
    this.dispatchEvent(new CustomEvent("change", { detail: { track: this.#track } }));
  }
}
