/** Ratchet client SDK: signed events (v2, RFC 8785), batching, retries, verdicts, approvals. */
export * from "./errors.js";
export { RatchetClient, type ClientOptions, type CheckpointOptions } from "./client.js";
export { SCHEME, assertPortable, canonical, signEvent, signedObject, type Event, type JsonValue } from "./signing.js";
export { finalAction, isAllowed, isPaused, type Accepted, type Action, type Approval, type Reason, type Verdict } from "./types.js";
