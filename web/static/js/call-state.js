// @ts-check
// The line on a call page that says how the call is going: the same words on the
// therapist's page and the client's. No protocol here.

/** @typedef {import("./call.js").CallState} CallState */

/**
 * The call's state line, written into `element` (its text, and `data-state` for the style).
 * @param {HTMLElement} element
 * @param {(key: string, fallback: string) => string} t  the page's strings
 */
export function callStateLine(element, t) {
  /**
   * Say `text`, styled as `state`.
   * @param {string} text
   * @param {string} state
   */
  function say(text, state) {
    element.textContent = text;
    element.dataset.state = state;
  }

  /**
   * Say what the call's state is; nothing once it is closed (the page says why).
   * @param {CallState} state
   */
  function render(state) {
    const texts = {
      connecting: t("callConnecting", "Connecting…"),
      connected: t("callConnected", "Connected"),
      reconnecting: t("callReconnecting", "Reconnecting…"),
      failed: t("callFailed", "The connection was lost. Trying again…"),
    };
    if (state !== "closed") say(texts[state], state);
  }

  return { say, render };
}
