/**
 * Event signatures, v2: HMAC-SHA256 over the RFC 8785 (JCS) form of the whole event.
 *
 * The signed object is the event exactly as it is sent, without `signature`, with `project_id`
 * set to the API key's project and `timestamp` set to the integer signing time (Unix seconds).
 * Canonicalization is the maintained `canonicalize` package (RFC 8785 by one of its authors).
 */
import { createHmac } from "node:crypto";
import canonicalize from "canonicalize";

export const SCHEME = "v2";

export type JsonValue =
  | null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type Event = { [key: string]: JsonValue | undefined };

/** RFC 8785 text of a JSON value. Throws on NaN, infinities and lone surrogates. */
export function canonical(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError("value has no JSON form");
  return text;
}

/**
 * Throws when the event holds an integer the gateway cannot read exactly: JSON.stringify writes
 * integral numbers below 1e21 without an exponent, and integers beyond ±(2^53 − 1) have no
 * portable value (the gateway answers 400), so they are refused before sending.
 */
export function assertPortable(value: unknown, path = "event"): void {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw Object.assign(new RangeError(`${path} is not a finite number`), { path });
    if (Number.isInteger(value) && Math.abs(value) > Number.MAX_SAFE_INTEGER && Math.abs(value) < 1e21) {
      throw Object.assign(new RangeError(`${path} is an integer beyond ±(2^53 − 1): it has no portable value`), { path });
    }
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => assertPortable(v, `${path}[${i}]`));
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) assertPortable(v, `${path}.${k}`);
  }
}

/** What is signed: the event less `signature`, with `project_id` and `timestamp` bound in. */
export function signedObject(event: Event, projectId: string, timestamp: number): Event {
  const out: Event = {};
  for (const [k, v] of Object.entries(event)) if (k !== "signature" && v !== undefined) out[k] = v;
  out.project_id = projectId;
  out.timestamp = Math.trunc(timestamp);
  return out;
}

/** `v2=<hex HMAC-SHA256>` of the event under the agent's secret. */
export function signEvent(secret: string, projectId: string, event: Event, timestamp: number): string {
  assertPortable(event);
  const message = canonical(signedObject(event, projectId, timestamp));
  return `${SCHEME}=` + createHmac("sha256", secret).update(message, "utf8").digest("hex");
}
