// The shared signature vectors of docs/signature-vectors.json (also checked by the server's and
// the Python SDK's tests).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { canonical, signEvent, signedObject } from "../dist/index.js";

const vectors = JSON.parse(readFileSync(new URL("../../../docs/signature-vectors.json", import.meta.url), "utf8"));

for (const v of vectors.canonical) {
  test(`canonical: ${v.name}`, () => {
    assert.equal(canonical(JSON.parse(v.input)), v.canonical);
  });
}

for (const v of vectors.events) {
  test(`signature: ${v.name}`, () => {
    const event = JSON.parse(v.event);
    assert.equal(canonical(signedObject(event, v.project_id, v.timestamp)), v.canonical);
    assert.equal(signEvent(v.secret, v.project_id, event, v.timestamp), v.signature);
    const plain = "v2=" + createHmac("sha256", v.secret).update(v.canonical, "utf8").digest("hex");
    assert.equal(plain, v.signature);
  });
}

for (const v of vectors.refused) {
  test(`refused before sending: ${v.name}`, () => {
    const event = { event_id: "e", agent_id: "a", run_id: "r", service: "s", action: "x", payload: JSON.parse(v.input) };
    assert.throws(() => signEvent("s", "p", event, 1700000000), RangeError);
  });
}

test("key order of the input does not matter", () => {
  const a = signEvent("s", "p", { b: 1, a: { y: 2, x: 1 } }, 1);
  const b = signEvent("s", "p", { a: { x: 1, y: 2 }, b: 1 }, 1);
  assert.equal(a, b);
});
