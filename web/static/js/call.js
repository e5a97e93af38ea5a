// @ts-check
// One WebRTC call between the two participants of an appointment, using the "perfect
// negotiation" pattern (docs/PROTOCOL.md): the therapist is impolite, the client polite.
//
// A Call is created when `peer-joined` arrives and closed on `peer-left` or `ended` — unless
// its media is still connected, when the page keeps it through a dropped websocket
// (call-reconnect.js). It only touches the DOM elements it is given (the remote <video>).

/** @typedef {import("./protocol.js").SignallingConnection} SignallingConnection */
/** @typedef {import("./protocol.js").IceServer} IceServer */
/** @typedef {import("./protocol.js").IceCandidateInit} IceCandidateInit */
/** @typedef {import("./protocol.js").OfferMessage} OfferMessage */
/** @typedef {import("./protocol.js").AnswerMessage} AnswerMessage */
/** @typedef {import("./protocol.js").CandidateMessage} CandidateMessage */

/**
 * What the page shows about the media connection.
 * @typedef {"connecting" | "connected" | "reconnecting" | "failed" | "closed"} CallState
 */

/** How long "disconnected" may last before an ICE restart is tried. */
const DISCONNECTED_GRACE_MS = 3000;
/** The polite side waits this long for the impolite side's first offer before offering itself. */
const POLITE_OFFER_WAIT_MS = 3000;
/** A call that has not connected after this long gets an ICE restart (from the impolite side). */
const CONNECT_WATCHDOG_MS = 10_000;

/**
 * An RTCIceCandidate as the protocol carries it (exactly these fields).
 * @param {RTCIceCandidate} candidate
 * @returns {IceCandidateInit}
 */
export function candidateToWire(candidate) {
  const json = typeof candidate.toJSON === "function" ? candidate.toJSON() : candidate;
  /** @type {IceCandidateInit} */
  const wire = {
    candidate: json.candidate || "",
    sdpMid: json.sdpMid ?? null,
    sdpMLineIndex: json.sdpMLineIndex ?? null,
  };
  if (json.usernameFragment !== undefined) wire.usernameFragment = json.usernameFragment ?? null;
  return wire;
}

/**
 * Enable or disable the tracks of one kind (mute / camera off without closing the device).
 * @param {MediaStream | null} stream
 * @param {"audio" | "video"} kind
 * @param {boolean} enabled
 */
export function setTracksEnabled(stream, kind, enabled) {
  if (!stream) return;
  for (const track of stream.getTracks()) {
    if (track.kind === kind) track.enabled = enabled;
  }
}

/**
 * Events: `statechange` (`detail.state`: {@link CallState}), `remotestream`
 * (`detail.stream`), `autoplayblocked` (the remote video could not start by itself: offer a
 * button that calls `playRemote()`), `problem` (`detail.error`, for logs).
 */
export class Call extends EventTarget {
  /** @type {RTCPeerConnection | null} */
  #pc = null;
  #connection;
  #polite;
  #iceServers;
  #remoteVideo;
  /** @type {MediaStream | null} */
  #localStream;
  /** @type {MediaStream | null} */
  #remoteStream = null;
  /** The transceiver carrying each kind, once there is one. @type {Record<"audio" | "video", RTCRtpTransceiver | null>} */
  #transceivers = { audio: null, video: null };
  /** Whether the local tracks have been handed to the peer connection. */
  #attached = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #attachTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #watchdogTimer;
  /** @type {CallState} */
  #state = "connecting";
  #everConnected = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #disconnectedTimer;
  /** @type {Array<[string, EventListener]>} */
  #subscriptions = [];
  /**
   * What the video sender carries instead of the camera: `undefined` the camera, `null`
   * nothing (audio only), or another track (a shared screen). @type {MediaStreamTrack | null | undefined}
   */
  #videoOverride = undefined;
  /** The network changed (back online, another network): try new ICE paths. */
  #onNetworkChange = () => {
    if (this.#pc && this.#everConnected) this.#restartIce();
  };

  // Perfect negotiation state.
  #makingOffer = false;
  #ignoreOffer = false;
  #isSettingRemoteAnswerPending = false;

  /**
   * @param {object} options
   * @param {SignallingConnection} options.connection
   * @param {IceServer[]} options.iceServers  from `welcome`
   * @param {boolean} options.polite          from `welcome`
   * @param {MediaStream | null} options.localStream  may have no tracks (devices refused)
   * @param {HTMLVideoElement} options.remoteVideo
   */
  constructor({ connection, iceServers, polite, localStream, remoteVideo }) {
    super();
    this.#connection = connection;
    this.#iceServers = iceServers;
    this.#polite = polite;
    this.#localStream = localStream;
    this.#remoteVideo = remoteVideo;
  }

  /** @returns {CallState} */
  get state() {
    return this.#state;
  }

  get polite() {
    return this.#polite;
  }

  get remoteStream() {
    return this.#remoteStream;
  }

  /** The peer connection, for statistics (quality.js); null once closed. */
  get peerConnection() {
    return this.#pc;
  }

  /**
   * Send `track` on the video sender instead of the camera, without renegotiation:
   * `null` sends nothing (audio only), a screen track shares the screen, `undefined`
   * goes back to the camera.
   * @param {MediaStreamTrack | null | undefined} track
   */
  overrideVideo(track) {
    this.#videoOverride = track;
    this.setLocalStream(this.#localStream);
  }

  /** Create the RTCPeerConnection, listen for relayed messages and add the local tracks. */
  start() {
    if (this.#pc) return;
    const pc = new RTCPeerConnection({ iceServers: this.#iceServers });
    this.#pc = pc;

    pc.addEventListener("negotiationneeded", async () => {
      try {
        this.#makingOffer = true;
        await this.#setLocalDescription(pc);
        if (pc.localDescription) this.#connection.send({ type: "offer", sdp: pc.localDescription.sdp });
      } catch (error) {
        this.#problem(error);
      } finally {
        this.#makingOffer = false;
      }
    });

    pc.addEventListener("icecandidate", ({ candidate }) => {
      // A null candidate is the end of candidates.
      this.#connection.send({ type: "candidate", candidate: candidate ? candidateToWire(candidate) : null });
    });

    pc.addEventListener("track", ({ track, streams }) => {
      let stream = streams[0];
      if (!stream) {
        stream = this.#remoteStream || new MediaStream();
        if (!stream.getTracks().includes(track)) stream.addTrack(track);
      }
      this.#remoteStream = stream;
      track.addEventListener("unmute", () => this.playRemote());
      this.playRemote();
      this.dispatchEvent(new CustomEvent("remotestream", { detail: { stream } }));
    });

    pc.addEventListener("connectionstatechange", () => this.#updateState());
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc.iceConnectionState === "failed") this.#restartIce();
      if (!("connectionState" in pc)) this.#updateState();
    });

    if (this.#subscriptions.length === 0) {
      this.#subscribe("offer", (message) => this.#onDescription({ type: "offer", sdp: /** @type {OfferMessage} */ (message).sdp }));
      this.#subscribe("answer", (message) => this.#onDescription({ type: "answer", sdp: /** @type {AnswerMessage} */ (message).sdp }));
      this.#subscribe("candidate", (message) => this.#onCandidate(/** @type {CandidateMessage} */ (message).candidate));
    }

    // Avoid an offer collision on every call set-up (perfect negotiation survives one, but
    // browsers are fragile when a rollback lands mid-gathering): the impolite side offers
    // first, with a transceiver for each kind even when it has no such device; the polite
    // side adds its tracks when that offer arrives, so they go into its answer. If no offer
    // comes, the polite side offers itself.
    if (this.#polite) {
      this.#attachTimer = setTimeout(() => this.#attach(), POLITE_OFFER_WAIT_MS);
    } else {
      this.#attach();
      for (const kind of /** @type {Array<"audio" | "video">} */ (["audio", "video"])) {
        if (!this.#transceivers[kind]) this.#transceivers[kind] = pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
    this.#watchdogTimer = setTimeout(() => {
      if (this.#pc === pc && !this.#everConnected) this.#restartIce();
    }, CONNECT_WATCHDOG_MS);
    window.addEventListener("online", this.#onNetworkChange);
    const network = /** @type {{connection?: EventTarget}} */ (navigator).connection;
    if (network) network.addEventListener("change", this.#onNetworkChange);
    this.#setState("connecting");
  }

  /** Hand the local tracks to the peer connection (once). */
  #attach() {
    clearTimeout(this.#attachTimer);
    if (this.#attached || !this.#pc) return;
    this.#attached = true;
    this.setLocalStream(this.#localStream);
  }

  /**
   * Send the tracks of `stream` (a new device, a device that came back): an existing sender
   * of the same kind swaps its track without renegotiation; a new kind is added.
   * @param {MediaStream | null} stream
   */
  setLocalStream(stream) {
    this.#localStream = stream;
    const pc = this.#pc;
    if (!pc || !this.#attached) return;
    for (const kind of /** @type {Array<"audio" | "video">} */ (["audio", "video"])) {
      let track = stream ? stream.getTracks().find((t) => t.kind === kind && t.readyState === "live") || null : null;
      if (kind === "video" && this.#videoOverride !== undefined) track = this.#videoOverride;
      const transceiver = this.#transceivers[kind];
      if (transceiver) {
        // Another device of the same kind, or one that came back: swap the track.
        if (transceiver.sender.track !== track) {
          transceiver.sender.replaceTrack(track).catch((error) => this.#problem(error));
        }
        // A transceiver that was only receiving starts sending: that renegotiates.
        if (track && (transceiver.direction === "recvonly" || transceiver.direction === "inactive")) {
          transceiver.direction = transceiver.direction === "recvonly" ? "sendrecv" : "sendonly";
          if (stream && typeof transceiver.sender.setStreams === "function") transceiver.sender.setStreams(stream);
        }
      } else if (track && stream) {
        // addTrack reuses a transceiver of this kind that has never sent (one the other
        // side's offer created, or our own recvonly one), else adds one.
        const sender = pc.addTrack(track, stream);
        this.#transceivers[kind] = pc.getTransceivers().find((t) => t.sender === sender) || null;
      }
    }
  }

  /** @param {boolean} muted */
  setMuted(muted) {
    setTracksEnabled(this.#localStream, "audio", !muted);
  }

  /** @param {boolean} off */
  setCameraOff(off) {
    setTracksEnabled(this.#localStream, "video", !off);
  }

  /** (Re)start the remote video; after an autoplay refusal, call this from a click. */
  async playRemote() {
    const video = this.#remoteVideo;
    if (!this.#remoteStream) return;
    if (video.srcObject !== this.#remoteStream) video.srcObject = this.#remoteStream;
    try {
      await video.play();
    } catch (error) {
      if (error instanceof DOMException && error.name === "NotAllowedError") {
        this.dispatchEvent(new CustomEvent("autoplayblocked"));
      }
    }
  }

  /** Close the peer connection; the local devices stay open (they belong to the page). */
  close() {
    clearTimeout(this.#disconnectedTimer);
    clearTimeout(this.#attachTimer);
    clearTimeout(this.#watchdogTimer);
    window.removeEventListener("online", this.#onNetworkChange);
    const network = /** @type {{connection?: EventTarget}} */ (navigator).connection;
    if (network) network.removeEventListener("change", this.#onNetworkChange);
    for (const [type, listener] of this.#subscriptions) {
      this.#connection.removeEventListener(type, listener);
    }
    this.#subscriptions = [];
    if (this.#pc) {
      this.#pc.close();
      this.#pc = null;
    }
    this.#transceivers = { audio: null, video: null };
    this.#attached = false;
    if (this.#remoteVideo.srcObject === this.#remoteStream) this.#remoteVideo.srcObject = null;
    this.#remoteStream = null;
    this.#setState("closed");
  }

  // -------------------------------------------------------------------------------------

  /**
   * @param {string} type
   * @param {(message: unknown) => void} handler
   */
  #subscribe(type, handler) {
    /** @type {EventListener} */
    const listener = (event) => handler(/** @type {CustomEvent} */ (event).detail);
    this.#connection.addEventListener(type, listener);
    this.#subscriptions.push([type, listener]);
  }

  /**
   * setLocalDescription() without arguments, with a fallback for older browsers.
   * @param {RTCPeerConnection} pc
   */
  async #setLocalDescription(pc) {
    try {
      await pc.setLocalDescription();
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      const description = pc.signalingState === "have-remote-offer" ? await pc.createAnswer() : await pc.createOffer();
      await pc.setLocalDescription(description);
    }
  }

  /**
   * The other browser started over with a new peer connection (its page was reloaded, or it
   * dropped its call while this one was kept through a reconnect): this peer connection
   * cannot talk to it, so make a new one as well, and answer its offer if it sent one.
   * @param {RTCSessionDescriptionInit | null} offer
   */
  #startOver(offer) {
    const old = this.#pc;
    if (!old) return;
    clearTimeout(this.#disconnectedTimer);
    clearTimeout(this.#attachTimer);
    clearTimeout(this.#watchdogTimer);
    window.removeEventListener("online", this.#onNetworkChange);
    const network = /** @type {{connection?: EventTarget}} */ (navigator).connection;
    if (network) network.removeEventListener("change", this.#onNetworkChange);
    this.#pc = null;
    old.close();
    this.#transceivers = { audio: null, video: null };
    this.#attached = false;
    this.#everConnected = false;
    this.#makingOffer = false;
    this.#ignoreOffer = false;
    this.#isSettingRemoteAnswerPending = false;
    this.#remoteStream = null;
    this.start();
    if (offer) this.#onDescription(offer);
  }

  /** @param {RTCSessionDescriptionInit} description */
  async #onDescription(description) {
    const pc = this.#pc;
    if (!pc) return;
    if (startedOver(pc, description)) {
      this.#startOver(description.type === "offer" ? description : null);
      return;
    }
    try {
      const readyForOffer =
        !this.#makingOffer && (pc.signalingState === "stable" || this.#isSettingRemoteAnswerPending);
      const offerCollision = description.type === "offer" && !readyForOffer;
      this.#ignoreOffer = !this.#polite && offerCollision;
      if (this.#ignoreOffer) return; // impolite: our own offer wins

      this.#isSettingRemoteAnswerPending = description.type === "answer";
      try {
        // Polite side on a collision: setRemoteDescription rolls our offer back implicitly.
        await pc.setRemoteDescription(description);
      } catch (error) {
        if (description.type !== "offer" || pc.signalingState !== "have-local-offer") throw error;
        // Browsers without implicit rollback: roll back explicitly, then accept theirs.
        await pc.setLocalDescription({ type: "rollback" });
        await pc.setRemoteDescription(description);
      } finally {
        this.#isSettingRemoteAnswerPending = false;
      }
      if (description.type === "offer") {
        // Polite side, first offer: our tracks go into this answer.
        if (!this.#attached) this.#attach();
        await this.#setLocalDescription(pc);
        if (pc.localDescription) this.#connection.send({ type: "answer", sdp: pc.localDescription.sdp });
      }
    } catch (error) {
      this.#problem(error);
    }
  }

  /** @param {IceCandidateInit | null} candidate */
  async #onCandidate(candidate) {
    const pc = this.#pc;
    if (!pc) return;
    try {
      if (candidate === null) {
        await pc.addIceCandidate(); // end of candidates
      } else {
        await pc.addIceCandidate(candidate);
      }
    } catch (error) {
      // Candidates for an offer we ignored, or an end-of-candidates an older browser does
      // not understand, are expected to fail.
      if (!this.#ignoreOffer && candidate !== null) this.#problem(error);
    }
  }

  /** ICE restarts come from the impolite side only, so they never collide. */
  #restartIce() {
    const pc = this.#pc;
    if (this.#polite || !pc || pc.signalingState === "closed") return;
    if (typeof pc.restartIce === "function") pc.restartIce(); // fires negotiationneeded
  }

  #updateState() {
    const pc = this.#pc;
    if (!pc) return;
    const raw = "connectionState" in pc ? pc.connectionState : iceToConnectionState(pc.iceConnectionState);
    clearTimeout(this.#disconnectedTimer);
    switch (raw) {
      case "new":
      case "connecting":
        this.#setState(this.#everConnected ? "reconnecting" : "connecting");
        break;
      case "connected":
        this.#everConnected = true;
        this.#setState("connected");
        break;
      case "disconnected":
        this.#setState("reconnecting");
        this.#disconnectedTimer = setTimeout(() => {
          if (this.#pc === pc && this.#state === "reconnecting") this.#restartIce();
        }, DISCONNECTED_GRACE_MS);
        break;
      case "failed":
        this.#setState("failed");
        this.#restartIce();
        break;
      case "closed":
        this.#setState("closed");
        break;
    }
  }

  /** @param {CallState} state */
  #setState(state) {
    if (this.#state === state) return;
    this.#state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state } }));
  }

  /** @param {unknown} error */
  #problem(error) {
    console.warn("call:", error);
    this.dispatchEvent(new CustomEvent("problem", { detail: { error } }));
  }
}

/**
 * The DTLS fingerprint in a session description: it names the peer connection that made it.
 * @param {string | undefined} sdp
 */
export function fingerprintOf(sdp) {
  const match = sdp ? /^a=fingerprint:(.+)$/m.exec(sdp) : null;
  return match ? match[1].trim().toLowerCase() : null;
}

/**
 * Whether `description` comes from another peer connection than the one `pc` talks to.
 * @param {RTCPeerConnection} pc
 * @param {RTCSessionDescriptionInit} description
 */
function startedOver(pc, description) {
  const current = pc.currentRemoteDescription || pc.remoteDescription;
  const before = current ? fingerprintOf(current.sdp) : null;
  const now = fingerprintOf(description.sdp);
  return Boolean(before && now && before !== now);
}

/**
 * @param {RTCIceConnectionState} state
 * @returns {RTCPeerConnectionState}
 */
function iceToConnectionState(state) {
  switch (state) {
    case "checking":
      return "connecting";
    case "completed":
      return "connected";
    default:
      return state;
  }
}
