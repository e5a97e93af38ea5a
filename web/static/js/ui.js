// @ts-check
// Small DOM helpers shared by the pages. User-facing text comes from the templates (gettext):
// `data-*` attributes on a hidden strings element, or <template> elements.

/**
 * A lookup into the `data-*` attributes of `element` (rendered with gettext by the template).
 * `t("cameraOk", "Camera works")` reads `data-camera-ok`; the fallback is a last resort.
 * `t("waited", "waiting {duration}", {duration: "3 min"})` fills `{placeholders}`.
 * @param {HTMLElement | null} element
 * @returns {(key: string, fallback: string, values?: Record<string, string>) => string}
 */
export function stringsFrom(element) {
  const data = element ? element.dataset : {};
  return (key, fallback, values) => {
    const text = data[key] || fallback;
    return values ? fill(text, values) : text;
  };
}

/**
 * Replace `{name}` placeholders; the values are plain text, never markup or patterns.
 * @param {string} text
 * @param {Record<string, string>} values
 */
export function fill(text, values) {
  return text.replace(/\{(\w+)\}/g, (match, key) => (key in values ? values[key] : match));
}

/**
 * An element that must exist on the page.
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} [type]
 * @returns {T}
 */
export function byId(id, type) {
  const element = document.getElementById(id);
  if (!element || (type && !(element instanceof type))) {
    throw new Error(`missing #${id}`);
  }
  return /** @type {T} */ (element);
}

/**
 * Show one of `sections` (by id) and hide the others, with the `hidden` attribute. Focus moves
 * to the shown section's first heading (which carries tabindex="-1") so keyboard and
 * screen-reader users land on the new content; the document title follows the heading.
 * @param {string[]} sections
 * @param {string} shown
 * @param {{focus?: boolean}} [options]
 */
export function showSection(sections, shown, { focus = true } = {}) {
  let changed = false;
  for (const id of sections) {
    const section = document.getElementById(id);
    if (!section) continue;
    const hide = id !== shown;
    if (section.hidden !== hide) changed = true;
    section.hidden = hide;
  }
  const section = document.getElementById(shown);
  if (!section || !changed) return;
  const heading = section.querySelector("h1, h2");
  if (heading instanceof HTMLElement) {
    const text = (heading.textContent || "").trim();
    if (text) document.title = `${text} · Alcove`;
    if (focus) heading.focus({ preventScroll: false });
  }
}

/**
 * Remove all children of `element`.
 * @param {Element} element
 */
export function clear(element) {
  element.replaceChildren();
}

/**
 * Format an instant as a time of day ("14:05"), in `timeZone` when it is valid, else locally.
 * @param {string | Date} instant
 * @param {string} [timeZone]
 */
export function formatTime(instant, timeZone) {
  const date = instant instanceof Date ? instant : new Date(instant);
  if (Number.isNaN(date.getTime())) return "";
  const lang = document.documentElement.lang || undefined;
  /** @type {Intl.DateTimeFormatOptions} */
  const options = { hour: "numeric", minute: "2-digit" };
  try {
    return new Intl.DateTimeFormat(lang, timeZone ? { ...options, timeZone } : options).format(date);
  } catch {
    return new Intl.DateTimeFormat(lang, options).format(date);
  }
}

/**
 * A duration in whole minutes, in the page's language ("3 min", "1 hr, 5 min").
 * @param {number} minutes
 */
export function formatMinutes(minutes) {
  const lang = document.documentElement.lang || undefined;
  const whole = Math.max(0, Math.floor(minutes));
  try {
    if (whole < 60) {
      return new Intl.NumberFormat(lang, { style: "unit", unit: "minute", unitDisplay: "short" }).format(whole);
    }
    const hours = new Intl.NumberFormat(lang, { style: "unit", unit: "hour", unitDisplay: "short" }).format(
      Math.floor(whole / 60),
    );
    const rest = new Intl.NumberFormat(lang, { style: "unit", unit: "minute", unitDisplay: "short" }).format(
      whole % 60,
    );
    return `${hours} ${rest}`;
  } catch {
    return `${whole} min`;
  }
}

/**
 * Set a toggle button's `aria-pressed`.
 * @param {HTMLButtonElement} button
 * @param {boolean} pressed
 */
export function setPressed(button, pressed) {
  button.setAttribute("aria-pressed", pressed ? "true" : "false");
}

/**
 * Attach a stream to a <video>, and start it. Resolves to false if the browser refused to
 * play (autoplay policy), so the page can offer a button.
 * @param {HTMLVideoElement} video
 * @param {MediaStream | null} stream
 */
export async function attachStream(video, stream) {
  if (video.srcObject !== stream) video.srcObject = stream;
  if (!stream) return true;
  try {
    await video.play();
    return true;
  } catch (error) {
    return !(error instanceof DOMException && error.name === "NotAllowedError");
  }
}

/**
 * A two-step button: the first press arms it (its text becomes `confirmText`), a second
 * press within `timeoutMs` runs `action`. No modal `confirm()`.
 * @param {HTMLButtonElement} button
 * @param {object} options
 * @param {string} options.confirmText
 * @param {() => void} options.action
 * @param {(text: string) => void} [options.announce]  tells screen readers it is armed
 * @param {string} [options.armedAnnouncement]
 * @param {number} [options.timeoutMs]
 */
export function twoStep(button, { confirmText, action, announce, armedAnnouncement, timeoutMs = 6000 }) {
  const original = button.textContent || "";
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const disarm = () => {
    clearTimeout(timer);
    delete button.dataset.confirming;
    button.textContent = original;
  };
  button.addEventListener("click", () => {
    if (button.dataset.confirming) {
      disarm();
      action();
      return;
    }
    button.dataset.confirming = "true";
    button.textContent = confirmText;
    if (announce && armedAnnouncement) announce(armedAnnouncement);
    timer = setTimeout(disarm, timeoutMs);
  });
  return { disarm };
}

/**
 * Say something to screen readers through a live region (cleared first so repeats are read).
 * @param {HTMLElement} region
 * @param {string} text
 */
export function announce(region, text) {
  region.textContent = "";
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}
