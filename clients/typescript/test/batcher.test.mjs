// The batcher's answers without a gateway: a fake fetch plays the gateway's HTTP answers (no
// Redis or Kafka is involved). What the Dec 5 SDK audit found: a failed fire-and-forget send
// crashed Node (an unhandled rejection), a request that failed after its retries was sent again
// 5 times over (25 requests for a documented 4 retries), and an item's error named the field
// in the SDK's own batch (events[2].priority) instead of the event (priority).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";
import { RatchetClient, UnavailableError, ValidationError } from "../dist/index.js";

const json = (status, body, headers = {}) => new Response(JSON.stringify(body), {
  status, headers: { "Content-Type": "application/json", ...headers },
});
const client = (impl, options = {}) => new RatchetClient({
  baseUrl: "http://gw.test", apiKey: "rk_test", agentId: "a1", agentSecret: "as_test",
  projectId: "prj_test", backoffMs: 1, lingerMs: 1, fetch: impl, ...options,
});
const ev = { service: "crm", action: "read", payload: { id: 1 } };

test("a request that failed after its retries is not sent again by the batcher", async () => {
  let calls = 0;
  const rc = client(async () => { calls += 1; return json(503, { error: "unavailable" }, { "Retry-After": "0" }); },
    { maxRetries: 2 });
  await assert.rejects(rc.send(ev), UnavailableError);
  assert.equal(calls, 3); // the first try and maxRetries retries, nothing more
});

test("an item the broker refused goes again; its error names the field in the event", async () => {
  const bodies = [];
  const rc = client(async (url, init) => {
    const sent = JSON.parse(init.body).events;
    bodies.push(sent.length);
    if (bodies.length === 1) {
      return json(200, { trace_id: "t", results: [
        { index: 0, status: "rejected", error: { error: "unavailable", field: null, message: "kafka" } },
        { index: 1, status: "rejected", error: { error: "invalid_request", field: "events[1].priority", message: "bad" } },
      ] });
    }
    return json(200, { trace_id: "t", results: [{ index: 0, status: "accepted", event_id: sent[0].event_id }] });
  });
  const [first, second] = rc.sendMany([ev, { ...ev, priority: "urgent" }]);
  const accepted = await first;
  assert.ok(accepted.event_id);
  await assert.rejects(second, (err) => err instanceof ValidationError && err.field === "priority"
    && err.traceId === "t");
  assert.deepEqual(bodies, [2, 1]);
});

test("a failed send nobody awaits does not crash the process; onError sees it", () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const script = `
    import { RatchetClient } from ${JSON.stringify(resolve(here, "../dist/index.js"))};
    const seen = [];
    const rc = new RatchetClient({ baseUrl: "http://gw.test", apiKey: "k", agentId: "a", agentSecret: "s",
      projectId: "p", onError: (e) => seen.push(e.constructor.name) });
    rc.send({ service: "crm", action: "read", payload: { n: NaN } });  // not awaited
    const throwing = new RatchetClient({ baseUrl: "http://gw.test", apiKey: "k", agentId: "a",
      agentSecret: "s", projectId: "p", onError: () => { throw new Error("logger failed"); } });
    throwing.send({ service: "crm", action: "read", payload: { n: NaN } });  // a failing onError
    await new Promise((r) => setTimeout(r, 50));
    console.log(JSON.stringify(seen));`;
  const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout.trim()), ["ValidationError"]);
});

test("a value refused before sending is named by its field, as the gateway would name it", async () => {
  const rc = client(async () => { throw new Error("nothing is sent"); });
  await assert.rejects(rc.send({ ...ev, payload: { deep: { n: NaN } } }),
    (err) => err instanceof ValidationError && err.field === "payload.deep.n");
  await assert.rejects(rc.post({ ...ev, metadata: { n: 2 ** 53 + 2 } }),
    (err) => err instanceof ValidationError && err.field === "metadata.n");
});

test("an unreachable gateway says why", async () => {
  const refused = Object.assign(new TypeError("fetch failed"), { cause: { code: "ECONNREFUSED" } });
  const rc = client(async () => { throw refused; }, { maxRetries: 0 });
  await assert.rejects(rc.post(ev), (err) => err instanceof UnavailableError && /ECONNREFUSED/.test(err.message));
});

test("events too large for one request go in several, each under maxBatchBytes", async () => {
  const sizes = [];
  const rc = client(async (url, init) => {
    sizes.push(Buffer.byteLength(init.body));
    const sent = JSON.parse(init.body).events;
    return json(200, { trace_id: "t", results: sent.map((e, i) => ({ index: i, status: "accepted", event_id: e.event_id })) });
  }, { maxBatchBytes: 64 * 1024, lingerMs: 50 });
  const done = await Promise.all(rc.sendMany(Array.from({ length: 30 },
    () => ({ ...ev, payload: { note: "x".repeat(10_000) } }))));
  assert.equal(new Set(done.map((a) => a.event_id)).size, 30);
  assert.ok(sizes.length >= 5 && sizes.every((n) => n <= 64 * 1024), String(sizes));
});

test("a request refused as too large is split in two; items over the value budget go again", async () => {
  const counts = [];
  const rc = client(async (url, init) => {
    const sent = JSON.parse(init.body).events;
    counts.push(sent.length);
    if (sent.length > 2) return json(413, { error: "payload_too_large", message: "big" });
    // the second item of a pair is over the batch's value budget: 413 for that item alone
    return json(200, { trace_id: "t", results: sent.map((e, i) => (i === 1
      ? { index: i, status: "rejected", error: { error: "payload_too_large", field: "events[1]", message: "values" } }
      : { index: i, status: "accepted", event_id: e.event_id })) });
  }, { lingerMs: 50 });
  const done = await Promise.all(rc.sendMany(Array.from({ length: 5 }, () => ev)));
  assert.equal(new Set(done.map((a) => a.event_id)).size, 5);
  // 5 refused whole; its halves: 2 (the second item goes again at once: 1), 3 (refused whole:
  // 1, then 2 whose second item goes again: 1)
  assert.deepEqual(counts, [5, 2, 1, 3, 1, 2, 1]);
});

test("a burst many times the batch value budget is all sent, in order", async () => {
  const accepted = [];
  const rc = client(async (url, init) => {
    const sent = JSON.parse(init.body).events;
    return json(200, { trace_id: "t", results: sent.map((e, i) => {
      if (i >= 133) return { index: i, status: "rejected", error: { error: "payload_too_large", field: `events[${i}]`, message: "values" } };
      accepted.push(e.event_id);
      return { index: i, status: "accepted", event_id: e.event_id };
    }) });
  }, { batchSize: 1000, lingerMs: 50, maxRetries: 2 });
  const done = await Promise.all(rc.sendMany(Array.from({ length: 1000 }, () => ev)));
  assert.deepEqual(accepted, done.map((a) => a.event_id));
});

test("flush waits for every event, also those sent again after an item's 413", async () => {
  let calls = 0;
  const rc = client(async (url, init) => {
    calls += 1;
    const n = calls;
    const sent = JSON.parse(init.body).events;
    if (n === 2) await new Promise((r) => setTimeout(r, 200)); // a slow request
    return json(200, { trace_id: "t", results: sent.map((e, i) => (n === 1 && i === 1
      ? { index: i, status: "rejected", error: { error: "payload_too_large", field: "events[1]", message: "values" } }
      : { index: i, status: "accepted", event_id: e.event_id })) });
  }, { batchSize: 2 });
  const states = rc.sendMany([ev, ev, ev, ev]).map((p) => {
    const s = { done: false };
    p.then(() => { s.done = true; }, () => { s.done = true; });
    return s;
  });
  await rc.flush();
  assert.equal(states.filter((s) => !s.done).length, 0);
});
