// @ts-check
// How well the call's connection is doing, measured from the peer connection's statistics
// every 2 seconds: round-trip time, packet loss and the bitrate the sender may use.
//
// One sampler feeds both the "Connection: good / fair / poor" indicator and the gentle
// prompt to switch to audio only, so the two never disagree.

/** @typedef {"good" | "fair" | "poor"} QualityLevel */
/**
 * One measurement; a value is null when the browser's statistics did not give it.
 * @typedef {object} QualitySample
 * @property {number | null} rttMs          round trip of the selected candidate pair
 * @property {number | null} lossPercent    packets lost over the last interval, both ways
 * @property {number | null} kbpsAvailable  outgoing bitrate the congestion control allows
 * @property {QualityLevel | null} level    null before anything was measured
 */

export const SAMPLE_INTERVAL_MS = 2000;
/** Poor for this long in a row before audio only is suggested. */
export const SUSTAINED_POOR_MS = 10_000;

// Thresholds. A video call is comfortable under ~250 ms round trip and ~2 % loss; beyond
// ~500 ms or ~8 % people talk over each other and the picture breaks up. Under ~150 kbit/s
// available there is no room for video at all. (Browsers start their estimate near
// 300 kbit/s and raise it as video flows, so "fair" begins only well below that.)
const FAIR = { rttMs: 250, lossPercent: 2, kbpsAvailable: 250 };
const POOR = { rttMs: 500, lossPercent: 8, kbpsAvailable: 150 };

/**
 * The level of one sample: the worst of its measurements. Missing measurements count as
 * good, so a browser that reports little is not called poor for it.
 * @param {{rttMs: number | null, lossPercent: number | null, kbpsAvailable: number | null}} sample
 * @returns {QualityLevel | null}
 */
export function classifyQuality({ rttMs, lossPercent, kbpsAvailable }) {
  if (rttMs === null && lossPercent === null && kbpsAvailable === null) return null;
  const poor =
    (rttMs !== null && rttMs >= POOR.rttMs) ||
    (lossPercent !== null && lossPercent >= POOR.lossPercent) ||
    (kbpsAvailable !== null && kbpsAvailable < POOR.kbpsAvailable);
  if (poor) return "poor";
  const fair =
    (rttMs !== null && rttMs >= FAIR.rttMs) ||
    (lossPercent !== null && lossPercent >= FAIR.lossPercent) ||
    (kbpsAvailable !== null && kbpsAvailable < FAIR.kbpsAvailable);
  return fair ? "fair" : "good";
}

/**
 * Packet counters, to turn cumulative statistics into loss over the last interval.
 * @typedef {{received: number, lost: number}} Counters
 */

/**
 * Read one report: the selected candidate pair's round trip and available bitrate, and the
 * packets received and lost both ways (inbound-rtp for what we receive, remote-inbound-rtp
 * for what the other side receives from us).
 * @param {RTCStatsReport} report
 */
export function readStats(report) {
  /** @type {number | null} */
  let rttMs = null;
  /** @type {number | null} */
  let kbpsAvailable = null;
  const counters = { received: 0, lost: 0 };
  /** @type {Map<string, any>} */
  const byId = new Map();
  report.forEach((stat) => byId.set(stat.id, stat));
  /** @type {any} */
  let pair = null;
  for (const stat of byId.values()) {
    if (stat.type === "transport" && stat.selectedCandidatePairId) {
      pair = byId.get(stat.selectedCandidatePairId) || pair;
    }
  }
  if (!pair) {
    for (const stat of byId.values()) {
      if (stat.type === "candidate-pair" && stat.state === "succeeded" && (stat.nominated || stat.selected)) pair = stat;
    }
  }
  if (pair) {
    if (typeof pair.currentRoundTripTime === "number") rttMs = Math.round(pair.currentRoundTripTime * 1000);
    if (typeof pair.availableOutgoingBitrate === "number") kbpsAvailable = Math.round(pair.availableOutgoingBitrate / 1000);
  }
  for (const stat of byId.values()) {
    if (stat.type === "inbound-rtp" && typeof stat.packetsReceived === "number") {
      counters.received += stat.packetsReceived;
      counters.lost += Math.max(0, stat.packetsLost || 0);
    } else if (stat.type === "remote-inbound-rtp" && typeof stat.packetsLost === "number") {
      // The other side's view of our packets: lost ones are counted; the received ones come
      // from our matching outbound-rtp.
      counters.lost += Math.max(0, stat.packetsLost);
      const outbound = stat.localId ? byId.get(stat.localId) : null;
      if (outbound && typeof outbound.packetsSent === "number") {
        counters.received += Math.max(0, outbound.packetsSent - stat.packetsLost);
      }
    }
  }
  return { rttMs, kbpsAvailable, counters };
}

/**
 * Loss in percent between two counter readings; null when nothing was exchanged.
 * @param {Counters | null} before
 * @param {Counters} now
 */
export function lossBetween(before, now) {
  if (!before) return null;
  const received = now.received - before.received;
  const lost = now.lost - before.lost;
  const total = received + lost;
  if (total <= 0 || received < 0 || lost < 0) return null;
  return Math.round((lost / total) * 1000) / 10;
}

/**
 * Samples a peer connection every 2 s while one is given.
 *
 * Events: `sample` (`detail`: {@link QualitySample}), `sustainedpoor` (poor for 10 s in a
 * row; sent once per poor stretch).
 */
export class QualityMonitor extends EventTarget {
  /** @type {RTCPeerConnection | null} */
  #pc = null;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #timer;
  /** @type {Counters | null} */
  #previous = null;
  /** When the current stretch of poor samples began (0: not poor). */
  #poorSince = 0;
  #prompted = false;
  /** While no video is sent the bitrate estimate sinks on its own: it then says nothing. */
  #sendingVideo = true;
  #now;

  /** @param {{now?: () => number}} [options] */
  constructor({ now = () => Date.now() } = {}) {
    super();
    this.#now = now;
  }

  /**
   * Start sampling `pc` (null: stop).
   * @param {RTCPeerConnection | null} pc
   */
  watch(pc) {
    if (pc === this.#pc) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#pc = pc;
    this.#previous = null;
    this.#poorSince = 0;
    this.#prompted = false;
    if (pc) this.#timer = setInterval(() => this.#sample(), SAMPLE_INTERVAL_MS);
    else this.#emit({ rttMs: null, lossPercent: null, kbpsAvailable: null, level: null });
  }

  /** @param {boolean} sending  whether video (camera or screen) is being sent */
  setSendingVideo(sending) {
    this.#sendingVideo = sending;
  }

  async #sample() {
    const pc = this.#pc;
    if (!pc || pc.connectionState === "closed") return;
    /** @type {RTCStatsReport} */
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return;
    }
    if (pc !== this.#pc) return;
    const stats = readStats(report);
    const { rttMs, counters } = stats;
    const kbpsAvailable = this.#sendingVideo ? stats.kbpsAvailable : null;
    const lossPercent = lossBetween(this.#previous, counters);
    this.#previous = counters;
    const connected = pc.connectionState === "connected" || pc.iceConnectionState === "connected" || pc.iceConnectionState === "completed";
    const level = connected ? classifyQuality({ rttMs, lossPercent, kbpsAvailable }) : null;
    this.#emit({ rttMs, lossPercent, kbpsAvailable, level });
    this.#track(level);
  }

  /** @param {QualityLevel | null} level */
  #track(level) {
    if (level !== "poor") {
      this.#poorSince = 0;
      this.#prompted = false;
      return;
    }
    const now = this.#now();
    if (!this.#poorSince) this.#poorSince = now;
    if (!this.#prompted && now - this.#poorSince >= SUSTAINED_POOR_MS) {
      this.#prompted = true;
      this.dispatchEvent(new CustomEvent("sustainedpoor"));
    }
  }

  /** @param {QualitySample} sample */
  #emit(sample) {
    this.dispatchEvent(new CustomEvent("sample", { detail: sample }));
  }
}
