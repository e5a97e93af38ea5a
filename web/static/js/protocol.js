// @ts-check
// The Alcove signalling protocol, version 1 (docs/PROTOCOL.md), over one websocket.
//
// SignallingConnection never touches the DOM: it opens the socket, says hello, answers the
// server's pings, reconnects with a growing, jittered delay, and turns every message into an
// event named after its type. Pages listen for those events and decide what to show.

export const PROTOCOL_VERSION = 1;

/** Close codes after which the browser must not reconnect (PROTOCOL.md, "Close codes"). */
export const NO_RECONNECT_CODES = Object.freeze([1008, 4001, 4003]);

export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_REPLACED = 4001;
export const CLOSE_ENDED = 4003;

/** The server pings every 20 s; after this long without any frame the socket is presumed dead. */
const LIVENESS_TIMEOUT_MS = 50_000;
const LIVENESS_CHECK_MS = 5_000;

// ---------------------------------------------------------------------------------------
// Data structures

/** @typedef {"ok" | "missing" | "denied"} DeviceStatus */
/** @typedef {{camera: DeviceStatus, microphone: DeviceStatus, connection?: import("./connection-test.js").ConnectionSummary}} DeviceSummary */
/** @typedef {"therapist" | "client"} Role */
/** @typedef {"waiting" | "admitted" | "in_call" | "left" | "ended"} ParticipantState */
/** @typedef {{urls: string[], username?: string, credential?: string}} IceServer */
/**
 * @typedef {object} IceCandidateInit
 * @property {string} candidate         at most 1024 characters; empty marks the end of a generation
 * @property {string | null} sdpMid
 * @property {number | null} sdpMLineIndex
 * @property {string | null} [usernameFragment]
 */
/**
 * @typedef {object} LobbyEntry
 * @property {string} participant       the client's participant id
 * @property {string} appointment       appointment id, "a-<number>"
 * @property {string} name
 * @property {string} start             ISO-8601 UTC instant
 * @property {string} end
 * @property {string} waitingSince
 * @property {DeviceSummary | null} devices
 * @property {"waiting" | "admitted" | "in_call"} state
 * @property {boolean} online
 */

// ---------------------------------------------------------------------------------------
// Messages. Every message may carry an optional `id` (1–64 characters) chosen by its sender.

/** @typedef {{type: "hello", id?: string, version: number, appointment?: string, devices?: DeviceSummary}} HelloMessage */
/**
 * `participant`, `appointment` and `state` are all null for a therapist's lobby socket (the
 * dashboard), and none is otherwise.
 * @typedef {{type: "welcome", id?: string, version: number, role: Role, participant: string | null,
 *   appointment: string | null, state: ParticipantState | null, iceServers: IceServer[], polite: boolean}} WelcomeMessage
 */
/** @typedef {{type: "ping", id?: string, ts: number}} PingMessage */
/** @typedef {{type: "pong", id?: string, ts: number}} PongMessage */
/**
 * @typedef {"bad-message" | "unknown-type" | "unsupported-version" | "too-large" | "forbidden"
 *   | "not-found" | "not-admitted" | "conflict" | "rate-limited" | "replaced"} ErrorCode
 */
/** @typedef {{type: "error", id?: string, error: ErrorCode, value: string}} ErrorMessage */
/** @typedef {{type: "waiting", id?: string, welcome: string, status: string}} WaitingMessage */
/** @typedef {{type: "lobby", id?: string, participants: LobbyEntry[]}} LobbyMessage */
/** @typedef {{type: "admit", id?: string, participant: string}} AdmitMessage */
/** @typedef {{type: "admitted", id?: string}} AdmittedMessage */
/** @typedef {{type: "send-back", id?: string, participant: string}} SendBackMessage */
/** @typedef {{type: "sent-back", id?: string}} SentBackMessage */
/** @typedef {{type: "message", id?: string, participant: string, text: string}} TextMessage */
/** @typedef {{type: "message-to-waiting", id?: string, text: string}} MessageToWaitingMessage */
/** @typedef {{type: "end", id?: string, appointment: string}} EndMessage */
/** @typedef {{type: "ended", id?: string, appointment: string}} EndedMessage */
/** @typedef {{type: "peer-joined", id?: string, participant: string, role: Role, name: string}} PeerJoinedMessage */
/** @typedef {{type: "peer-left", id?: string, participant: string, role: Role}} PeerLeftMessage */
/** @typedef {{type: "offer", id?: string, sdp: string}} OfferMessage */
/** @typedef {{type: "answer", id?: string, sdp: string}} AnswerMessage */
/** @typedef {{type: "candidate", id?: string, candidate: IceCandidateInit | null}} CandidateMessage */
/** @typedef {{type: "leave", id?: string}} LeaveMessage */
/** A line of text chat, relayed while both are in the call; never stored. @typedef {{type: "chat", id?: string, text: string}} ChatMessage */
/** What the sender is sending. @typedef {{type: "media", id?: string, video: "on" | "paused", screen: boolean}} MediaMessage */

/**
 * @typedef {HelloMessage | PingMessage | PongMessage | AdmitMessage | SendBackMessage | TextMessage
 *   | EndMessage | OfferMessage | AnswerMessage | CandidateMessage | LeaveMessage | ChatMessage
 *   | MediaMessage} OutgoingMessage
 */
/**
 * @typedef {WelcomeMessage | PingMessage | PongMessage | ErrorMessage | WaitingMessage | LobbyMessage
 *   | AdmittedMessage | SentBackMessage | MessageToWaitingMessage | EndedMessage | PeerJoinedMessage
 *   | PeerLeftMessage | OfferMessage | AnswerMessage | CandidateMessage | ChatMessage
 *   | MediaMessage} IncomingMessage
 */

/** @typedef {"connecting" | "open" | "reconnecting" | "closed"} ConnectionState */

/**
 * Detail of the `close` event.
 * @typedef {object} CloseDetail
 * @property {number} code        the websocket close code (1006 when the socket just went away)
 * @property {string} reason
 * @property {boolean} willReconnect
 * @property {boolean} byUs       true when this side closed (close() or after sending leave)
 */

/** The `/ws` URL of the page's own origin. Nothing in it authenticates anyone. */
export function defaultSocketUrl() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
}

/**
 * One participant's websocket, with automatic reconnection.
 *
 * Events (all `CustomEvent`s):
 * - one per incoming message type (`welcome`, `lobby`, `offer`, `error`, …), `detail` = the message;
 * - `message` for every incoming message as well;
 * - `open` (`detail.reconnected`), once the socket is open and `hello` has been sent;
 * - `close` (`detail` = {@link CloseDetail});
 * - `statechange` (`detail.state`).
 */
export class SignallingConnection extends EventTarget {
  /** @type {WebSocket | null} */
  #socket = null;
  /** @type {ConnectionState} */
  #state = "closed";
  #attempt = 0;
  #everOpened = false;
  #closedByUs = false;
  #leaving = false;
  #nextId = 1;
  #lastReceived = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  #livenessTimer;
  #url;
  #hello;
  #minDelay;
  #maxDelay;
  #random;

  /**
   * @param {object} options
   * @param {() => Omit<HelloMessage, "type">} options.hello  fields of `hello` besides `type`;
   *   called before every (re)connection so it can carry the latest device check
   * @param {string} [options.url]
   * @param {number} [options.minDelay]  first reconnection delay, ms (default 500)
   * @param {number} [options.maxDelay]  longest reconnection delay, ms (default 15 000)
   * @param {() => number} [options.random]  for tests
   */
  constructor({ hello, url = defaultSocketUrl(), minDelay = 500, maxDelay = 15_000, random = Math.random }) {
    super();
    this.#hello = hello;
    this.#url = url;
    this.#minDelay = minDelay;
    this.#maxDelay = maxDelay;
    this.#random = random;
    if (typeof window !== "undefined") {
      window.addEventListener("online", () => {
        if (this.#state === "reconnecting") this.#reconnectNow();
      });
    }
  }

  /** @returns {ConnectionState} */
  get state() {
    return this.#state;
  }

  /** Open the socket. Also restarts a connection that was closed (by either side). */
  connect() {
    clearTimeout(this.#retryTimer);
    this.#closedByUs = false;
    this.#leaving = false;
    this.#attempt = 0;
    if (this.#socket) return;
    this.#setState(this.#everOpened ? "reconnecting" : "connecting");
    this.#open();
  }

  /**
   * Send one message. Returns false (and drops it) when the socket is not open.
   * Sending `leave` means the server's close that follows is expected: no reconnection.
   * @param {OutgoingMessage} message
   */
  send(message) {
    const socket = this.#socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    if (message.type === "leave") this.#leaving = true;
    socket.send(JSON.stringify(message));
    return true;
  }

  /**
   * Send a message with a fresh `id`, so an `error` in answer to it can be recognised.
   * Returns the id, or null when the socket is not open.
   * @param {OutgoingMessage} message
   */
  request(message) {
    const id = `m-${this.#nextId++}`;
    return this.send({ ...message, id }) ? id : null;
  }

  /** Bytes queued on the socket but not yet sent. */
  get bufferedAmount() {
    return this.#socket ? this.#socket.bufferedAmount : 0;
  }

  /**
   * Close the socket for good (until `connect()` is called again).
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = 1000, reason = "") {
    this.#closedByUs = true;
    clearTimeout(this.#retryTimer);
    const socket = this.#socket;
    if (socket) {
      socket.close(code, reason);
      // The close event follows; #onClose sees #closedByUs and does not reconnect.
    } else if (this.#state !== "closed") {
      this.#setState("closed");
      this.#emit("close", { code, reason, willReconnect: false, byUs: true });
    }
  }

  // -------------------------------------------------------------------------------------

  #open() {
    /** @type {WebSocket} */
    let socket;
    try {
      socket = new WebSocket(this.#url);
    } catch {
      this.#scheduleReconnect(1006, "could not open");
      return;
    }
    this.#socket = socket;
    socket.addEventListener("open", () => {
      if (this.#socket !== socket) return;
      this.#lastReceived = Date.now();
      this.#startLiveness();
      socket.send(JSON.stringify({ type: "hello", ...this.#hello() }));
      const reconnected = this.#everOpened;
      this.#everOpened = true;
      this.#setState("open");
      this.#emit("open", { reconnected });
    });
    socket.addEventListener("message", (event) => {
      if (this.#socket !== socket) return;
      this.#lastReceived = Date.now();
      this.#onMessage(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (this.#socket !== socket) return;
      this.#onClose(event.code, event.reason);
    });
    // "error" is always followed by "close"; nothing to do here.
  }

  /** @param {unknown} data */
  #onMessage(data) {
    if (typeof data !== "string") return;
    /** @type {unknown} */
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      return;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return;
    const message = /** @type {IncomingMessage} */ (parsed);
    if (typeof message.type !== "string") return;
    if (message.type === "ping") {
      this.send({ type: "pong", ts: message.ts });
    }
    if (message.type === "welcome") {
      // The server accepted us: the next outage starts again from the shortest delay.
      this.#attempt = 0;
    }
    this.#emit("message", message);
    this.#emit(message.type, message);
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #onClose(code, reason) {
    this.#socket = null;
    this.#stopLiveness();
    const byUs = this.#closedByUs || this.#leaving;
    if (byUs || NO_RECONNECT_CODES.includes(code)) {
      this.#setState("closed");
      this.#emit("close", { code, reason, willReconnect: false, byUs });
      return;
    }
    this.#scheduleReconnect(code, reason);
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #scheduleReconnect(code, reason) {
    const base = Math.min(this.#maxDelay, this.#minDelay * 2 ** this.#attempt);
    const delay = Math.round(base * (0.5 + this.#random())); // ±50 % jitter
    this.#attempt += 1;
    this.#setState("reconnecting");
    this.#emit("close", { code, reason, willReconnect: true, byUs: false });
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#reconnectNow(), delay);
  }

  #reconnectNow() {
    clearTimeout(this.#retryTimer);
    if (this.#socket || this.#closedByUs) return;
    this.#open();
  }

  #startLiveness() {
    this.#stopLiveness();
    this.#livenessTimer = setInterval(() => {
      if (Date.now() - this.#lastReceived < LIVENESS_TIMEOUT_MS) return;
      // The network went away without a close frame: drop this socket and start over.
      const socket = this.#socket;
      this.#socket = null;
      this.#stopLiveness();
      if (socket) {
        try {
          socket.close(4000, "liveness timeout");
        } catch {
          // already closing
        }
      }
      this.#scheduleReconnect(1006, "liveness timeout");
    }, LIVENESS_CHECK_MS);
  }

  #stopLiveness() {
    clearInterval(this.#livenessTimer);
    this.#livenessTimer = undefined;
  }

  /** @param {ConnectionState} state */
  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.#emit("statechange", { state });
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
