// Show every <time data-local> in the browser's own time zone.
// data-local="datetime" shows the date and time, "time" the time only.

/** @param {HTMLTimeElement} element */
function localise(element) {
  const instant = new Date(element.dateTime);
  if (Number.isNaN(instant.getTime())) return;
  /** @type {Intl.DateTimeFormatOptions} */
  const options = element.dataset.local === "time"
    ? { hour: "numeric", minute: "2-digit", timeZoneName: "short" }
    : { weekday: "long", day: "numeric", month: "long", hour: "numeric", minute: "2-digit", timeZoneName: "short" };
  element.textContent = new Intl.DateTimeFormat(undefined, options).format(instant);
}

export function localiseAll(root = document) {
  root.querySelectorAll("time[data-local]").forEach((el) => localise(/** @type {HTMLTimeElement} */ (el)));
}

localiseAll();
