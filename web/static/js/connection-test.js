// @ts-check
// The connection test before joining (join/_connection_test.html). The client's camera and
// microphone go to the server's echo peer (POST /join/echo) and come straight back; for up to
// 10 seconds the browser's own statistics give the round trip, the loss and the bitrates, and
// the client is told in plain words whether their connection will carry a call. The result is
// kept on the page (`data-summary`) for the `hello` to carry to the therapist. Joining never
// waits for it, and nothing here stops the client from joining.

/**
 * What the therapist is shown; a measurement is null when the statistics did not give it.
 * @typedef {"good" | "fair" | "poor" | "failed"} Verdict
 * @typedef {{verdict: Verdict, rttMs: number | null, lossPercent: number | null,
 *   kbpsUp: number | null, kbpsDown: number | null}} ConnectionSummary
 * @typedef {Record<string, any>[]} StatsList  the values of an RTCStatsReport
 */

/** The whole test, from the click to the verdict. */
const TEST_MS = 10_000;
/** Gathering our candidates (the offer is sent with all of them: no trickling). */
const GATHER_MS = 3_000;
/** How long the statistics are watched once connected, at most. */
const MEASURE_MS = 5_000;
/** The test's video: at most this many lines, at most this many bits a second. */
const ECHO_VIDEO_HEIGHT = 360;
const ECHO_VIDEO_BPS = 800_000;

/**
 * Where a verdict turns. Poor: a call will freeze or drop. Fair: it works, not smoothly.
 * Bitrate only counts against a connection when video was sent (sound alone needs little),
 * and only when it is very low: in a few seconds a browser's sending rate is still ramping
 * up (to about 300 kbit/s on a fast network), so it shows a weak link, not a strong one.
 */
export const THRESHOLDS = {
  poor: { rttMs: 400, lossPercent: 5, kbps: 100 },
  fair: { rttMs: 200, lossPercent: 2, kbps: 200 },
};

// ---------------------------------------------------------------------------------------
// The figures (the same computation as tests/support/connection_stats.py)

/**
 * @param {StatsList} stats
 * @param {string} type
 * @param {string} key
 * @returns {number | null}
 */
function total(stats, type, key) {
  let sum = null;
  for (const s of stats) {
    if (s.type === type && typeof s[key] === "number") sum = (sum ?? 0) + s[key];
  }
  return sum;
}

/**
 * How much counter `key` grew between the snapshots, from the first of `types` that has it.
 * @param {StatsList} before
 * @param {StatsList} after
 * @param {string[]} types
 * @param {string} key
 */
function delta(before, after, types, key) {
  for (const type of types) {
    const end = total(after, type, key);
    if (end !== null) return end - (total(before, type, key) ?? 0);
  }
  return null;
}

/** @param {StatsList} stats */
function rttSeconds(stats) {
  for (const s of stats) {
    if (s.type === "candidate-pair" && s.nominated && typeof s.currentRoundTripTime === "number") {
      return s.currentRoundTripTime;
    }
  }
  const rtts = stats
    .filter((s) => s.type === "remote-inbound-rtp" && typeof s.roundTripTime === "number")
    .map((s) => s.roundTripTime);
  return rtts.length ? Math.max(...rtts) : null;
}

/**
 * @param {number | null} bytes
 * @param {number} seconds
 */
function kbps(bytes, seconds) {
  if (bytes === null || seconds <= 0) return null;
  return Math.round((Math.max(0, bytes) * 8) / 1000 / seconds);
}

/**
 * The figures for the `seconds` between two `getStats()` snapshots of one connection. Loss
 * counts both ways: what the echo missed of ours, and what we missed of the echo's.
 * @param {StatsList} before
 * @param {StatsList} after
 * @param {number} seconds
 * @returns {Omit<ConnectionSummary, "verdict">}
 */
export function summarise(before, after, seconds) {
  const rtt = rttSeconds(after);
  const sent = delta(before, after, ["outbound-rtp"], "packetsSent") ?? 0;
  const lostUp = Math.max(0, delta(before, after, ["remote-inbound-rtp"], "packetsLost") ?? 0);
  const received = delta(before, after, ["inbound-rtp"], "packetsReceived") ?? 0;
  const lostDown = Math.max(0, delta(before, after, ["inbound-rtp"], "packetsLost") ?? 0);
  const expected = sent + received + lostDown;
  const loss = expected > 0 ? Math.round(Math.min(100, (100 * (lostUp + lostDown)) / expected) * 10) / 10 : null;
  const up = delta(before, after, ["outbound-rtp", "candidate-pair", "transport"], "bytesSent");
  const down = delta(before, after, ["inbound-rtp", "candidate-pair", "transport"], "bytesReceived");
  return {
    rttMs: rtt === null ? null : Math.round(rtt * 1000),
    lossPercent: loss,
    kbpsUp: kbps(up, seconds),
    kbpsDown: kbps(down, seconds),
  };
}

/**
 * Good, fair or poor, by the worst of the figures (unknown figures count for nothing).
 * @param {Omit<ConnectionSummary, "verdict">} figures
 * @param {boolean} sentVideo
 * @returns {Verdict}
 */
export function verdictFor(figures, sentVideo) {
  /** @param {{rttMs: number, lossPercent: number, kbps: number}} limit */
  const worse = (limit) =>
    (figures.rttMs !== null && figures.rttMs > limit.rttMs) ||
    (figures.lossPercent !== null && figures.lossPercent > limit.lossPercent) ||
    (sentVideo && figures.kbpsUp !== null && figures.kbpsUp < limit.kbps) ||
    (sentVideo && figures.kbpsDown !== null && figures.kbpsDown < limit.kbps);
  if (worse(THRESHOLDS.poor)) return "poor";
  if (worse(THRESHOLDS.fair)) return "fair";
  return "good";
}

/** @type {ConnectionSummary} */
const FAILED = { verdict: "failed", rttMs: null, lossPercent: null, kbpsUp: null, kbpsDown: null };

/**
 * The last result on this page, for the `hello`: `{connection: …}` to spread into the
 * device summary, or `{}` if the test has not been run (or could not be).
 * @param {Document} [doc]
 * @returns {{connection?: ConnectionSummary}}
 */
export function storedConnectionSummary(doc = document) {
  const raw = doc.getElementById("connection-test")?.dataset.summary;
  if (!raw) return {};
  try {
    return { connection: /** @type {ConnectionSummary} */ (JSON.parse(raw)) };
  } catch {
    return {};
  }
}

// ---------------------------------------------------------------------------------------
// Running the test

class Skip extends Error {}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Resolve when `pc`'s candidates are gathered, or after `ms` (the offer then carries those
 * gathered so far).
 * @param {RTCPeerConnection} pc
 * @param {number} ms
 */
function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve(undefined);
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

/**
 * Resolve true once `pc` is connected, false if it fails or `ms` pass first.
 * @param {RTCPeerConnection} pc
 * @param {number} ms
 * @returns {Promise<boolean>}
 */
function connected(pc, ms) {
  return new Promise((resolve) => {
    const check = () => {
      if (pc.connectionState === "connected") resolve(true);
      else if (pc.connectionState === "failed" || pc.connectionState === "closed") resolve(false);
    };
    pc.addEventListener("connectionstatechange", check);
    check();
    setTimeout(() => resolve(false), ms);
  });
}

/**
 * What the test sends: the server decodes and encodes the video again to echo it, so the
 * picture is scaled down to at most ECHO_VIDEO_HEIGHT lines and ECHO_VIDEO_BPS (enough to
 * see how the connection copes, and cheap for the server).
 * @param {MediaStreamTrack} track
 * @returns {RTCRtpEncodingParameters}
 */
function encodingFor(track) {
  if (track.kind !== "video") return {};
  const height = (typeof track.getSettings === "function" && track.getSettings().height) || ECHO_VIDEO_HEIGHT;
  return { scaleResolutionDownBy: Math.max(1, height / ECHO_VIDEO_HEIGHT), maxBitrate: ECHO_VIDEO_BPS };
}

/** @param {RTCPeerConnection} pc */
async function statsList(pc) {
  /** @type {StatsList} */
  const list = [];
  (await pc.getStats()).forEach((value) => list.push(value));
  return list;
}

/**
 * Tracks to send: the preview's camera and microphone (shared, not stopped afterwards), else
 * a drawn picture, so the test works without a camera or permission too.
 * @returns {{tracks: MediaStreamTrack[], own: MediaStreamTrack[]}}
 */
function tracksToSend() {
  const preview = document.getElementById("preview-video");
  const stream = preview instanceof HTMLVideoElement ? preview.srcObject : null;
  const live = stream instanceof MediaStream ? stream.getTracks().filter((t) => t.readyState === "live") : [];
  if (live.some((t) => t.kind === "video")) return { tracks: live, own: [] };
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext("2d");
  let frame = 0;
  const draw = () => {
    if (!context) return;
    frame += 1;
    context.fillStyle = `hsl(${(frame * 7) % 360} 60% 50%)`;
    context.fillRect(0, 0, canvas.width, canvas.height);
  };
  draw();
  const timer = setInterval(draw, 66);
  const video = canvas.captureStream(15).getVideoTracks()[0];
  video.addEventListener("ended", () => clearInterval(timer));
  return { tracks: [...live, video], own: [video] };
}

/**
 * Run one test: the verdict and figures, or `null` if the test could not be run at all (the
 * server is busy or has no echo): that says nothing about the client's connection.
 * @param {(seconds: number) => void} onStarted
 * @returns {Promise<ConnectionSummary | null>}
 */
export async function runConnectionTest(onStarted) {
  const deadline = performance.now() + TEST_MS;
  /** @type {RTCPeerConnection | null} */
  let pc = null;
  /** @type {MediaStreamTrack[]} */
  let own = [];
  try {
    const config = await fetch("/join/echo/config", { credentials: "same-origin" });
    if (!config.ok) throw new Skip(`the echo's configuration answered ${config.status}`);
    const { iceServers, seconds } = await config.json();
    onStarted(typeof seconds === "number" ? seconds : TEST_MS / 1000);
    pc = new RTCPeerConnection({ iceServers });
    const media = tracksToSend();
    own = media.own;
    const stream = new MediaStream(media.tracks);
    for (const track of media.tracks) {
      pc.addTransceiver(track, { direction: "sendrecv", streams: [stream], sendEncodings: [encodingFor(track)] });
    }
    const sentVideo = media.tracks.some((t) => t.kind === "video");
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, GATHER_MS);
    const offer = pc.localDescription;
    if (!offer) throw new Skip("no offer");
    const response = await fetch("/join/echo", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ type: "offer", sdp: offer.sdp }),
    });
    if (!response.ok) throw new Skip(`the echo answered ${response.status}`);
    const answer = await response.json();
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    if (!(await connected(pc, Math.max(0, deadline - performance.now() - 1000)))) return FAILED;
    const before = await statsList(pc);
    const started = performance.now();
    await sleep(Math.max(1000, Math.min(MEASURE_MS, deadline - performance.now())));
    const after = await statsList(pc);
    const figures = summarise(before, after, (performance.now() - started) / 1000);
    return { verdict: verdictFor(figures, sentVideo), ...figures };
  } catch (error) {
    if (!(error instanceof Skip)) console.warn("connection test:", error);
    return null;
  } finally {
    if (pc) pc.close();
    own.forEach((track) => track.stop());
  }
}

// ---------------------------------------------------------------------------------------
// The page

/**
 * @param {string} text
 * @param {Record<string, string>} values
 */
function fill(text, values) {
  return text.replace(/\{(\w+)\}/g, (match, key) => (key in values ? values[key] : match));
}

function init() {
  const section = document.getElementById("connection-test");
  const start = document.getElementById("connection-test-start");
  const status = document.getElementById("connection-test-status");
  const result = document.getElementById("connection-test-result");
  const verdict = document.getElementById("connection-test-verdict");
  const advice = document.getElementById("connection-test-advice");
  const details = document.getElementById("connection-test-details");
  if (!section || !(start instanceof HTMLButtonElement) || !status || !result || !verdict || !advice || !details) return;
  // The module may be loaded twice (by the page and by a script importing it): wire once.
  if (section.dataset.ready) return;
  section.dataset.ready = "true";
  const strings = section.dataset;
  /** @param {string} key */
  const t = (key) => strings[key] || "";
  /** @param {number | null} value */
  const shown = (value) => (value === null ? "–" : value.toLocaleString());

  if (typeof RTCPeerConnection === "undefined") {
    section.hidden = true;
    return;
  }

  start.addEventListener("click", async () => {
    start.disabled = true;
    result.hidden = true;
    status.hidden = false;
    status.textContent = fill(t("testing"), { seconds: String(TEST_MS / 1000) });
    const summary = await runConnectionTest((seconds) => {
      status.textContent = fill(t("testing"), { seconds: String(seconds) });
    });
    start.disabled = false;
    start.textContent = t("again") || start.textContent;
    if (!summary) {
      status.textContent = t("unavailable");
      return;
    }
    status.hidden = true;
    section.dataset.summary = JSON.stringify(summary);
    section.dispatchEvent(new CustomEvent("connectiontest", { detail: summary, bubbles: true }));
    const key = summary.verdict[0].toUpperCase() + summary.verdict.slice(1);
    result.dataset.verdict = summary.verdict;
    verdict.textContent = t(`verdict${key}`);
    advice.textContent = t(`advice${key}`);
    details.hidden = summary.verdict === "failed";
    details.textContent = fill(t("details"), {
      rtt: shown(summary.rttMs),
      loss: shown(summary.lossPercent),
      up: shown(summary.kbpsUp),
      down: shown(summary.kbpsDown),
    });
    result.hidden = false;
  });
}

if (typeof document !== "undefined") init();
