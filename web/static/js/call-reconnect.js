// @ts-check
// Keeping a call through a dropped websocket.
//
// The server keeps an admitted participant admitted while their socket is gone (for a couple
// of minutes) and lets them straight back in, with `peer-left` to the other side when the
// socket drops and `peer-joined` to both when it is back. The media, though, flows
// peer-to-peer and usually never noticed the outage: so a call whose peer connection is
// still connected is kept through `peer-left` and reused on the next `peer-joined`, instead
// of being torn down and negotiated again.
//
// The therapist's page learns from the lobby (which follows `peer-left`) whether the client
// is reconnecting (still admitted, offline) or has left (gone from the lobby, or waiting).

/** @typedef {import("./protocol.js").SignallingConnection} SignallingConnection */
/** @typedef {import("./protocol.js").LobbyMessage} LobbyMessage */
/** @typedef {import("./protocol.js").LobbyEntry} LobbyEntry */
/** @typedef {import("./call.js").Call} Call */

/** How long the therapist's page waits for the lobby that follows `peer-left`. */
const LOBBY_WAIT_MS = 3000;

/**
 * What became of the other participant after `peer-left`: `reconnecting` (still admitted,
 * not connected), `left`, or `sent-back`/`present` (the lobby shows them elsewhere).
 * @param {LobbyEntry | null} entry  the client's lobby entry, null when not listed
 * @returns {"reconnecting" | "back" | "left" | "waiting"}
 */
export function clientPresence(entry) {
  if (!entry) return "left";
  if (entry.state === "waiting") return "waiting";
  return entry.online ? "back" : "reconnecting";
}

/**
 * Whether a call may be kept through an outage of the signalling connection: its media is
 * still flowing, so both ends can carry on with the peer connections they have.
 * @param {Call | null} call
 */
export function callIsAlive(call) {
  return Boolean(call && call.state === "connected");
}

/**
 * Events: `status` (`detail.status`: "reconnecting" | "left" | "" — what to say about the
 * other participant; "" when there is nothing to say).
 */
export class PeerPresence extends EventTarget {
  #role;
  #appointment;
  /** @type {(() => void) | null} */
  #closeCall = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #lobbyTimer;
  /** @type {LobbyEntry | null} */
  #entry = null;
  /** @type {Call | null} */
  #kept = null;
  /** @type {EventListener | null} */
  #watch = null;

  /**
   * @param {object} options
   * @param {SignallingConnection} options.connection
   * @param {"therapist" | "client"} options.role   this page's role
   * @param {string} [options.appointment]          the therapist's appointment id
   */
  constructor({ connection, role, appointment = "" }) {
    super();
    this.#role = role;
    this.#appointment = appointment;
    connection.addEventListener("lobby", (event) => {
      const message = /** @type {CustomEvent<LobbyMessage>} */ (event).detail;
      this.#entry = message.participants.find((entry) => entry.appointment === this.#appointment) || null;
      if (this.#role !== "therapist") return;
      if (this.#tracking) this.#decide();
      else if (this.#said === "left" && this.#entry) this.#emit(""); // they came back
    });
  }

  /**
   * `peer-left` arrived. `closeCall` tears the page's call down; it is called now, or later
   * once it is clear the other participant is not coming back.
   * @param {Call | null} call
   * @param {() => void} closeCall
   */
  peerLeft(call, closeCall) {
    this.#settle();
    const keep = callIsAlive(call);
    if (!keep) closeCall();
    if (this.#role === "therapist") {
      // The lobby that follows says whether the client is reconnecting or gone.
      this.#tracking = true;
      this.#closeCall = keep ? closeCall : null;
      this.#kept = keep ? call : null;
      this.#lobbyTimer = setTimeout(() => this.#decide(), LOBBY_WAIT_MS);
    } else if (keep && call) {
      // The therapist's connection dropped: keep the picture while the media still flows.
      // Once it stops, they really went (a closed page stops answering within seconds).
      this.#closeCall = closeCall;
      this.#kept = call;
      this.#emit("reconnecting");
      this.#watchCall(call);
    }
  }

  /**
   * `peer-joined` arrived: whether the page should keep `call` (true) instead of starting a
   * new one. Both sides keep a call exactly when its media is still connected.
   * @param {Call | null} call
   */
  peerJoined(call) {
    this.#settle();
    this.#emit("");
    return callIsAlive(call);
  }

  /** The page closed its call on its own (sent back, ended, left). */
  reset() {
    this.#settle();
  }

  /** Since `peer-left`, follow the client in the lobby. */
  #tracking = false;

  #decide() {
    if (!this.#tracking) return;
    clearTimeout(this.#lobbyTimer);
    const presence = clientPresence(this.#entry);
    if (presence === "reconnecting") {
      this.#emit("reconnecting");
      return;
    }
    if (presence === "back") return; // `peer-joined` follows.
    const close = this.#closeCall;
    this.#settle();
    if (close) close();
    this.#emit(presence === "left" ? "left" : "");
  }

  /** @param {Call} call */
  #watchCall(call) {
    this.#watch = () => {
      if (this.#kept === call && call.state !== "connected") {
        const close = this.#closeCall;
        this.#settle();
        if (close) close();
        this.#emit("left");
      }
    };
    call.addEventListener("statechange", this.#watch);
  }

  #settle() {
    clearTimeout(this.#lobbyTimer);
    if (this.#kept && this.#watch) this.#kept.removeEventListener("statechange", this.#watch);
    this.#watch = null;
    this.#kept = null;
    this.#tracking = false;
    this.#closeCall = null;
  }

  /** What was last said about the other participant. */
  #said = "";

  /** @param {"reconnecting" | "left" | ""} status */
  #emit(status) {
    this.#said = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status } }));
  }
}
