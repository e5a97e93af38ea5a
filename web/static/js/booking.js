// @ts-check
// The slot picker on the booking page and the manage page (book/_slot_picker.html).
//
// The server renders the free days and times in one zone (the therapist's, or one chosen in
// the zone form), with links, so the page works without JavaScript. This script takes the
// same free times as UTC instants (from the JSON API, or a JSON block in the page), shows
// them in the visitor's zone (detected, and changeable with the zone <select>), and keeps the
// form's hidden `timezone` field in step. Text comes from #booking-strings (gettext); every
// node is built with the DOM API, never from markup.

import { announce, byId, stringsFrom } from "./ui.js";

/** @typedef {{start: Date, value: string}} FreeTime */
/** @typedef {{key: string, year: number, month: number, day: number}} LocalDay */

const lang = document.documentElement.lang || undefined;

/**
 * The instants in an API answer: `{slots: [...]}` or a bare list, whose items are ISO
 * strings or objects with a `start`.
 * @param {unknown} data
 * @returns {FreeTime[]}
 */
export function freeTimesFrom(data) {
  const record = /** @type {Record<string, unknown>} */ (data && typeof data === "object" ? data : {});
  const items = Array.isArray(data) ? data : Array.isArray(record.slots) ? record.slots : [];
  /** @type {FreeTime[]} */
  const times = [];
  for (const item of items) {
    const value = typeof item === "string" ? item : item && typeof item === "object" ? item.start : null;
    if (typeof value !== "string") continue;
    const start = new Date(value);
    if (!Number.isNaN(start.getTime())) times.push({ start, value });
  }
  times.sort((a, b) => a.start.getTime() - b.start.getTime());
  return times;
}

/**
 * Whether the browser knows `zone` as an IANA time zone.
 * @param {string} zone
 */
export function validZone(zone) {
  if (!zone) return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * The local calendar day of `instant` in `zone`.
 * @param {Date} instant
 * @param {string} zone
 * @returns {LocalDay}
 */
export function localDay(instant, zone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).formatToParts(instant);
  /** @param {string} type */
  const part = (type) => Number(parts.find((p) => p.type === type)?.value);
  const year = part("year");
  const month = part("month");
  const day = part("day");
  const key = `${String(year).padStart(4, "0")}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
  return { key, year, month, day };
}

/**
 * Noon UTC on a calendar day: a Date for formatting the day itself, whatever the zone.
 * @param {number} year
 * @param {number} month  1-12
 * @param {number} day
 */
function calendarDate(year, month, day) {
  return new Date(Date.UTC(year, month - 1, day, 12));
}

/**
 * Group free times by their local day in `zone`, in order.
 * @param {FreeTime[]} times
 * @param {string} zone
 * @returns {Map<string, {day: LocalDay, times: FreeTime[]}>}
 */
export function byLocalDay(times, zone) {
  /** @type {Map<string, {day: LocalDay, times: FreeTime[]}>} */
  const days = new Map();
  for (const time of times) {
    const day = localDay(time.start, zone);
    const entry = days.get(day.key);
    if (entry) entry.times.push(time);
    else days.set(day.key, { day, times: [time] });
  }
  return days;
}

/** A zone's name as people read it: "America/New_York" → "America/New York". @param {string} zone */
export function zoneLabel(zone) {
  return zone.replaceAll("_", " ");
}

/**
 * @param {HTMLElement} picker
 */
function init(picker) {
  const t = stringsFrom(document.getElementById("booking-strings"));
  const zoneSelect = byId("zone", HTMLSelectElement);
  const zoneSubmit = document.getElementById("zone-submit");
  const zoneInput = byId("timezone", HTMLInputElement);
  const calendar = byId("calendar");
  const timesBox = byId("times", HTMLFieldSetElement);
  const legend = byId("times-legend");
  const list = byId("time-list", HTMLUListElement);
  const note = byId("times-zone-note");
  const status = byId("slots-status");
  const problem = byId("slots-problem");
  const horizonDays = picker.dataset.horizonDays || "";
  const hint = document.getElementById("calendar-hint");

  /** @type {FreeTime[]} */
  let times = [];
  let zone = picker.dataset.zone || "UTC";
  let selectedDay = picker.dataset.selectedDay || "";
  const checked = /** @type {HTMLInputElement | null} */ (
    picker.querySelector('input[name="start"]:checked')
  );
  let selectedStart = checked ? checked.value : picker.dataset.selectedStart || "";

  // The visitor's zone: the one they chose in the zone form, else the browser's.
  if (picker.dataset.zoneChosen !== "true") {
    const detected = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (detected && validZone(detected)) zone = detected;
  }
  ensureOption(zone);
  zoneSelect.value = zone;
  if (zoneSubmit) zoneSubmit.hidden = true;

  zoneSelect.addEventListener("change", () => {
    if (!validZone(zoneSelect.value)) return;
    zone = zoneSelect.value;
    const chosen = times.find((time) => time.value === selectedStart);
    selectedDay = chosen ? localDay(chosen.start, zone).key : "";
    render();
    announce(status, t("zoneChanged", "Times are now shown in {zone}.", { zone: zoneLabel(zone) }));
  });
  // Without a change event (a keyboard user pressing Enter), the GET form must not reload.
  zoneSelect.form?.addEventListener("submit", (event) => event.preventDefault());

  list.addEventListener("change", (event) => {
    const target = event.target;
    if (target instanceof HTMLInputElement && target.name === "start") selectedStart = target.value;
  });
  // A "nearest free time" offered after a clash belongs to the same radio group.
  picker.closest("form")?.addEventListener("change", (event) => {
    const target = event.target;
    if (target instanceof HTMLInputElement && target.name === "start" && target.checked) {
      selectedStart = target.value;
    }
  });

  /** @param {string} value */
  function ensureOption(value) {
    if ([...zoneSelect.options].some((option) => option.value === value)) return;
    const option = document.createElement("option");
    option.value = value;
    option.textContent = zoneLabel(value);
    zoneSelect.prepend(option);
  }

  async function load() {
    const url = picker.dataset.slotsUrl;
    try {
      if (url) {
        status.textContent = t("loading", "Loading free times…");
        const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        times = freeTimesFrom(await response.json());
      } else {
        const block = document.getElementById("slots-data");
        times = freeTimesFrom(JSON.parse(block?.textContent || "[]"));
      }
    } catch (error) {
      // The server's own list (in its zone) stays; the zone form works as without JavaScript.
      status.textContent = "";
      if (zoneSubmit) zoneSubmit.hidden = false;
      if (!list.querySelector("input")) problem.hidden = false;
      console.warn("free times could not be loaded", error);
      return;
    }
    status.textContent = "";
    render();
  }

  function render() {
    zoneInput.value = zone;
    note.textContent = t("zoneNote", "Times are shown in {zone}.", { zone: zoneLabel(zone) });
    const days = byLocalDay(times, zone);
    if (!days.has(selectedDay)) {
      const chosen = times.find((time) => time.value === selectedStart);
      selectedDay = chosen ? localDay(chosen.start, zone).key : days.keys().next().value || "";
    }
    renderCalendar(days);
    renderTimes(days.get(selectedDay));
  }

  /**
   * @param {Map<string, {day: LocalDay, times: FreeTime[]}>} days
   */
  function renderCalendar(days) {
    calendar.replaceChildren();
    if (days.size === 0) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.id = "no-slots";
      empty.textContent = t("noSlots", "There are no free times in the next {days} days.", { days: horizonDays });
      calendar.append(empty);
      return;
    }
    const heading = document.createElement("h3");
    heading.className = "small-heading";
    heading.id = "calendar-heading";
    heading.textContent = t("daysHeading", "Days with free times");
    calendar.append(heading);

    const entries = [...days.values()];
    const first = entries[0].day;
    const last = entries[entries.length - 1].day;
    const monthFormat = new Intl.DateTimeFormat(lang, { month: "long", year: "numeric", timeZone: "UTC" });
    const dayFormat = new Intl.DateTimeFormat(lang, { weekday: "long", day: "numeric", month: "long", timeZone: "UTC" });
    const weekdays = weekdayNames();
    let year = first.year;
    let month = first.month;
    while (year < last.year || (year === last.year && month <= last.month)) {
      const box = document.createElement("div");
      box.className = "month";
      const name = document.createElement("h4");
      name.className = "month-name";
      const label = monthFormat.format(calendarDate(year, month, 1));
      name.textContent = label;
      const header = document.createElement("div");
      header.className = "weekdays";
      header.setAttribute("aria-hidden", "true");
      for (const weekday of weekdays) {
        const cell = document.createElement("span");
        cell.textContent = weekday;
        header.append(cell);
      }
      const grid = document.createElement("ol");
      grid.className = "month-grid";
      grid.setAttribute("aria-label", label);
      if (hint) grid.setAttribute("aria-describedby", hint.id);
      const length = new Date(Date.UTC(year, month, 0)).getUTCDate();
      const lead = (calendarDate(year, month, 1).getUTCDay() + 6) % 7;
      for (let day = 1; day <= length; day += 1) {
        const item = document.createElement("li");
        item.className = day === 1 ? `day col-${lead + 1}` : "day";
        const key = `${String(year).padStart(4, "0")}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
        if (days.has(key)) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "day-link";
          button.dataset.day = key;
          button.textContent = String(day);
          button.setAttribute("aria-label", dayFormat.format(calendarDate(year, month, day)));
          button.setAttribute("aria-pressed", key === selectedDay ? "true" : "false");
          button.tabIndex = key === selectedDay ? 0 : -1;
          item.append(button);
        } else {
          const none = document.createElement("span");
          none.className = "day-none";
          none.setAttribute("aria-hidden", "true");
          none.textContent = String(day);
          item.append(none);
        }
        grid.append(item);
      }
      box.append(name, header, grid);
      calendar.append(box);
      month += 1;
      if (month > 12) {
        month = 1;
        year += 1;
      }
    }
  }

  /**
   * @param {{day: LocalDay, times: FreeTime[]} | undefined} entry
   */
  function renderTimes(entry) {
    list.replaceChildren();
    if (!entry) {
      timesBox.hidden = true;
      return;
    }
    timesBox.hidden = false;
    const dayText = dayLabel(entry.day);
    legend.textContent = t("timesOn", "Times on {day} ({zone})", { day: dayText, zone: zoneLabel(zone) });
    const timeFormat = new Intl.DateTimeFormat(lang, { hour: "numeric", minute: "2-digit", timeZone: zone });
    entry.times.forEach((time, index) => {
      const item = document.createElement("li");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "start";
      input.id = `start-${index + 1}`;
      input.value = time.value;
      input.required = true;
      input.checked = time.value === selectedStart;
      const label = document.createElement("label");
      label.htmlFor = input.id;
      label.textContent = timeFormat.format(time.start);
      item.append(input, label);
      list.append(item);
    });
  }

  /** @param {LocalDay} day */
  function dayLabel(day) {
    return new Intl.DateTimeFormat(lang, { weekday: "long", day: "numeric", month: "long", timeZone: "UTC" }).format(
      calendarDate(day.year, day.month, day.day),
    );
  }

  // Choosing a day shows its times; the choice is told to screen readers.
  calendar.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target.closest("button[data-day]") : null;
    if (!(target instanceof HTMLButtonElement)) return;
    selectedDay = target.dataset.day || "";
    for (const button of dayButtons()) {
      button.setAttribute("aria-pressed", button === target ? "true" : "false");
      button.tabIndex = button === target ? 0 : -1;
    }
    const entry = byLocalDay(times, zone).get(selectedDay);
    renderTimes(entry);
    if (entry) {
      announce(
        status,
        t("dayChosen", "{day}: {count} free times. Choose one below.", {
          day: dayLabel(entry.day),
          count: String(entry.times.length),
        }),
      );
    }
  });

  /** @returns {HTMLButtonElement[]} */
  function dayButtons() {
    return [...calendar.querySelectorAll("button[data-day]")].filter(
      (button) => button instanceof HTMLButtonElement,
    );
  }

  // The days are one stop for Tab; the arrow keys move between them (left and right: the
  // previous or next free day; up and down: a week back or on, or the nearest free day).
  calendar.addEventListener("keydown", (event) => {
    const target = event.target;
    if (!(target instanceof HTMLButtonElement) || !target.dataset.day) return;
    const buttons = dayButtons();
    const index = buttons.indexOf(target);
    /** @type {HTMLButtonElement | undefined} */
    let next;
    if (event.key === "ArrowRight") next = buttons[index + 1];
    else if (event.key === "ArrowLeft") next = buttons[index - 1];
    else if (event.key === "Home") next = buttons[0];
    else if (event.key === "End") next = buttons[buttons.length - 1];
    else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 7 : -7;
      const wanted = shiftDay(target.dataset.day, step);
      next =
        step > 0
          ? buttons.find((button) => (button.dataset.day || "") >= wanted)
          : [...buttons].reverse().find((button) => (button.dataset.day || "") <= wanted);
    } else return;
    event.preventDefault();
    if (!next) return;
    for (const button of buttons) button.tabIndex = button === next ? 0 : -1;
    next.focus();
  });

  load();
}

/**
 * The calendar day `days` after `key` (YYYY-MM-DD), as YYYY-MM-DD.
 * @param {string} key
 * @param {number} days
 */
function shiftDay(key, days) {
  const [year, month, day] = key.split("-").map(Number);
  return calendarDate(year, month, day + days).toISOString().slice(0, 10);
}

/** Short weekday names, Monday first, in the page's language. */
function weekdayNames() {
  const format = new Intl.DateTimeFormat(lang, { weekday: "short", timeZone: "UTC" });
  // 5 January 2026 was a Monday.
  return Array.from({ length: 7 }, (_, index) => format.format(calendarDate(2026, 1, 5 + index)));
}

const picker = document.getElementById("slot-picker");
if (picker) init(picker);
