// @ts-check
// The Yjs sync protocol as worksheets carry it (docs/WORKSHEETS.md "Sync"): one y-protocols
// sync message per `yjs` JSON message, base64 in `data`. No DOM here, so the call pages and
// the homework page share it, and it can be checked on its own.
//
// A sync message is varUint(0) (messageSync), varUint(step), then the payload as varUint
// length and bytes. Steps: 0 = sync step 1 (a state vector), 1 = sync step 2 (the update the
// receiver is missing), 2 = update (a change).

import * as Y from "../vendor/yjs.js";

export const MESSAGE_SYNC = 0;
export const STEP1 = 0;
export const STEP2 = 1;
export const UPDATE = 2;

/**
 * The largest update one message may carry. The socket's frames are at most 64 KiB and base64
 * makes 4 bytes out of 3, so 48 KiB is the ceiling; staying well under it leaves room for the
 * JSON around the data.
 */
export const MAX_UPDATE_BYTES = 40 * 1024;

/** @typedef {{step: number, payload: Uint8Array}} SyncMessage */

/**
 * Standard base64 (with padding) of some bytes.
 * @param {Uint8Array} bytes
 */
export function toBase64(bytes) {
  let binary = "";
  // String.fromCharCode takes its arguments on the stack: go in slices.
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * The bytes of a base64 string; throws a SyntaxError on anything else.
 * @param {string} text
 */
export function fromBase64(text) {
  let binary;
  try {
    binary = atob(text);
  } catch {
    throw new SyntaxError("not base64");
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/**
 * @param {number[]} out
 * @param {number} value  a non-negative safe integer
 */
function writeVarUint(out, value) {
  while (value > 0x7f) {
    out.push(0x80 | (value % 0x80));
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

/**
 * One sync message.
 * @param {number} step  STEP1, STEP2 or UPDATE
 * @param {Uint8Array} payload
 * @returns {Uint8Array}
 */
export function encodeSyncMessage(step, payload) {
  /** @type {number[]} */
  const head = [];
  writeVarUint(head, MESSAGE_SYNC);
  writeVarUint(head, step);
  writeVarUint(head, payload.length);
  const message = new Uint8Array(head.length + payload.length);
  message.set(head, 0);
  message.set(payload, head.length);
  return message;
}

/**
 * Read one sync message; throws a SyntaxError when it is anything else.
 * @param {Uint8Array} message
 * @returns {SyncMessage}
 */
export function decodeSyncMessage(message) {
  let position = 0;
  const readVarUint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (position >= message.length) throw new SyntaxError("truncated sync message");
      const byte = message[position++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
      if (scale > Number.MAX_SAFE_INTEGER) throw new SyntaxError("number too large in sync message");
    }
  };
  if (readVarUint() !== MESSAGE_SYNC) throw new SyntaxError("not a sync message");
  const step = readVarUint();
  if (step !== STEP1 && step !== STEP2 && step !== UPDATE) throw new SyntaxError("unknown sync step");
  const length = readVarUint();
  if (position + length !== message.length) throw new SyntaxError("wrong payload length in sync message");
  return { step, payload: message.subarray(position) };
}

/**
 * The base64 `data` of a sync message.
 * @param {number} step
 * @param {Uint8Array} payload
 */
export function encodeData(step, payload) {
  return toBase64(encodeSyncMessage(step, payload));
}

/**
 * Read the base64 `data` of a `yjs` message.
 * @param {string} data
 */
export function decodeData(data) {
  return decodeSyncMessage(fromBase64(data));
}

/**
 * Our sync step 1: "this is what I have".
 * @param {Y.Doc} doc
 */
export function syncStep1(doc) {
  return encodeData(STEP1, Y.encodeStateVector(doc));
}

/**
 * Whether an update carries nothing (no structs, no deletions), as a diff often does.
 * @param {Uint8Array} update
 */
export function isEmptyUpdate(update) {
  if (update.length <= 2) return true;
  const { structs, ds } = Y.decodeUpdate(update);
  return structs.length === 0 && ds.clients.size === 0;
}

/**
 * Merge consecutive updates into as few as fit in `limit` bytes each, in order. An update that
 * is larger on its own stays alone (the caller keeps single updates small).
 * @param {Uint8Array[]} updates
 * @param {number} [limit]
 * @returns {Uint8Array[]}
 */
export function packUpdates(updates, limit = MAX_UPDATE_BYTES) {
  /** @type {Uint8Array[]} */
  const packed = [];
  /** @type {Uint8Array[]} */
  let batch = [];
  let size = 0;
  for (const update of updates) {
    if (batch.length && size + update.length > limit) {
      packed.push(batch.length === 1 ? batch[0] : Y.mergeUpdates(batch));
      batch = [];
      size = 0;
    }
    batch.push(update);
    size += update.length;
  }
  if (batch.length) packed.push(batch.length === 1 ? batch[0] : Y.mergeUpdates(batch));
  return packed;
}

/**
 * The answer to the other side's sync step 1: everything `doc` has that their state vector
 * lacks, as sync step 2 messages. Usually one; after a long time offline it may not fit one
 * frame, and then the document's own local changes (`localUpdates`, oldest first: the only
 * thing the server can lack) go in as several messages, in order, so each builds on the last.
 * @param {Y.Doc} doc
 * @param {Uint8Array} stateVector  from their step 1
 * @param {Uint8Array[]} localUpdates
 * @returns {{replies: string[], carries: boolean}} base64 data of each message, and whether
 *   they bring the other side content it lacks (a deletion alone cannot be told apart: Yjs
 *   always sends the whole delete set, and deleting does not move the state vector)
 */
export function answerStep1(doc, stateVector, localUpdates) {
  const whole = Y.encodeStateAsUpdate(doc, stateVector);
  const theirs = Y.decodeStateVector(stateVector);
  const ours = Y.decodeStateVector(Y.encodeStateVector(doc));
  const carries = [...ours].some(([client, clock]) => clock > (theirs.get(client) || 0));
  if (whole.length <= MAX_UPDATE_BYTES) return { replies: [encodeData(STEP2, whole)], carries };
  const missing = localUpdates.map((update) => Y.diffUpdate(update, stateVector)).filter((u) => !isEmptyUpdate(u));
  return { replies: packUpdates(missing).map((update) => encodeData(STEP2, update)), carries };
}

/**
 * Apply a `yjs` message from the other side to `doc`, with `origin` (so the document's update
 * listener can tell remote changes from local ones).
 * @param {Y.Doc} doc
 * @param {string} data
 * @param {unknown} origin
 * @param {Uint8Array[]} localUpdates  see answerStep1
 * @returns {{step: number, replies: string[], carries: boolean}}  replies: base64 data to send
 *   back; carries: whether they hold changes
 */
export function receiveSync(doc, data, origin, localUpdates) {
  const { step, payload } = decodeData(data);
  if (step === STEP1) return { step, ...answerStep1(doc, payload, localUpdates) };
  Y.applyUpdate(doc, payload, origin);
  return { step, replies: [], carries: false };
}
