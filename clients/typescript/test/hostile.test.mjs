// The client against a gateway that misbehaves (attack run 9, R5–R7), played by a fake fetch:
// a call's timeout bounds the whole call (retries, Retry-After waits, a body trickling in), an
// answer over maxResponseBytes is refused while it streams (before: a 3 GB answer aborted Node),
// and a malformed 2xx answer or a verdict of another event is an UnavailableError — before,
// decide() returned {"approval":null}, a verdict with no action, or another event's allow.
import { test } from "node:test";
import assert from "node:assert/strict";
import { RatchetClient, RateLimitedError, UnavailableError, isAllowed } from "../dist/index.js";

const MiB = 1024 * 1024;
const json = (status, body, headers = {}) => new Response(typeof body === "string" ? body : JSON.stringify(body), {
  status, headers: { "Content-Type": "application/json", ...headers },
});
const client = (impl, options = {}) => new RatchetClient({
  baseUrl: "http://gw.test", apiKey: "rk_test", agentId: "a1", agentSecret: "as_test",
  projectId: "prj_test", backoffMs: 1, lingerMs: 1, fetch: impl, ...options,
});
const ev = { service: "crm", action: "read", payload: { id: 1 } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function took(promise) {
  const started = Date.now();
  let error;
  try { await promise; } catch (e) { error = e; }
  return { ms: Date.now() - started, error };
}

/** A 200 answer of one byte every `every` ms, without end (stops when cancelled). */
const trickle = (every) => new Response(new ReadableStream({
  async pull(ctl) { await sleep(every); ctl.enqueue(new Uint8Array([32])); },
}), { status: 200, headers: { "Content-Type": "application/json" } });

// --- R5 ------------------------------------------------------------------------------------------
test("a Retry-After longer than the time left gives up at once", async () => {
  let calls = 0;
  const rc = client(async () => {
    calls += 1;
    return json(429, { error: "rate_limited", message: "slow down" }, { "Retry-After": "30", "X-Trace-Id": "t429" });
  });
  const { ms, error } = await took(rc.decide(ev, { timeoutMs: 2000 }));
  assert.ok(error instanceof RateLimitedError && error.retryAfterS === 30 && error.traceId === "t429", String(error));
  assert.ok(ms < 500, `${ms} ms`);
  assert.equal(calls, 1);
});

test("retries stop at the deadline", async () => {
  let calls = 0;
  const rc = client(async () => { calls += 1; return json(503, { error: "unavailable" }, { "Retry-After": "1" }); },
    { timeoutMs: 1500 });
  const { ms, error } = await took(rc.pending());
  assert.ok(error instanceof UnavailableError && error.status === 503, String(error));
  assert.ok(ms < 1400, `${ms} ms`);
  assert.equal(calls, 2); // one retry fits; the second would end past the deadline
});

test("a body trickling in cannot hold a call past its deadline", async () => {
  const rc = client(async () => trickle(300), { timeoutMs: 1000 });
  for (const call of [() => rc.decide(ev, { timeoutMs: 1000 }), () => rc.verdict("e1"), () => rc.pending()]) {
    const { ms, error } = await took(call());
    assert.ok(error instanceof UnavailableError && error.code === "timeout", String(error));
    assert.ok(ms < 1300, `${ms} ms`);
  }
});

test("a fetch that never answers (and ignores the abort) is given up at the deadline", async () => {
  const rc = client(() => new Promise(() => {}), { timeoutMs: 800 });
  const { ms, error } = await took(rc.post(ev));
  assert.ok(error instanceof UnavailableError && error.code === "timeout", String(error));
  assert.ok(ms < 1100, `${ms} ms`);
});

// --- R6 ------------------------------------------------------------------------------------------
test("an endless answer is refused past the cap while it streams", async () => {
  let pulls = 0;
  const rc = client(async () => new Response(new ReadableStream({
    start(ctl) { ctl.enqueue(new TextEncoder().encode('{"items":["')); },
    pull(ctl) { pulls += 1; ctl.enqueue(new Uint8Array(MiB).fill(65)); },
  }), { status: 200, headers: { "X-Trace-Id": "tbig" } }));
  const { error } = await took(rc.decide(ev));
  assert.ok(error instanceof UnavailableError && /too large/.test(error.message), String(error));
  assert.equal(error.status, 200);
  assert.equal(error.traceId, "tbig");
  assert.ok(pulls <= 20, `${pulls} MiB read`);
});

test("a declared length over the cap is refused before reading", async () => {
  let pulled = false;
  const rc = client(async () => new Response(new ReadableStream({ pull(ctl) { pulled = true; ctl.enqueue(new Uint8Array(10)); } }),
    { status: 200, headers: { "Content-Length": String(17 * MiB) } }), { maxResponseBytes: 16 * MiB });
  const { error } = await took(rc.pending());
  assert.ok(error instanceof UnavailableError && /too large/.test(error.message), String(error));
});

// --- R7 ------------------------------------------------------------------------------------------
const MALFORMED = {
  "not JSON": "[1,2",
  "a list": "[1,2]",
  "verdict is a string": '{"status":"decided","verdict":"allow","event_id":"mine"}',
  "verdict without action": '{"status":"decided","verdict":{"event_id":"mine"}}',
  "an unknown action": '{"status":"decided","verdict":{"event_id":"mine","action":"ok"}}',
  "another event's verdict": '{"status":"decided","verdict":{"event_id":"other","action":"allow"}}',
  "score not a number": '{"status":"decided","verdict":{"event_id":"mine","action":"allow","score":"x"}}',
};
for (const [name, body] of Object.entries(MALFORMED)) {
  test(`a malformed decide answer is a typed error: ${name}`, async () => {
    const rc = client(async () => json(200, body, { "X-Trace-Id": "tbad" }));
    const { error } = await took(rc.decide({ ...ev, event_id: "mine" }, { timeoutMs: 2000 }));
    assert.ok(error instanceof UnavailableError, String(error));
    assert.equal(error.status, 200);
    assert.equal(error.traceId, "tbad");
    assert.equal(error.code, "malformed_answer");
  });
}

test("a verdict of another event is never returned; a guard does not run on it", async () => {
  const rc = client(async () => json(200, { event_id: "other", verdict: { event_id: "other", action: "allow" }, approval: null }));
  await assert.rejects(rc.verdict("mine"), (e) => e instanceof UnavailableError && /other/.test(e.message));
  await assert.rejects(rc.waitForDecision("mine", 2000), UnavailableError);
  let ran = false;
  const del = rc.guard("crm", "delete", async () => { ran = true; });
  await assert.rejects(del({ id: 1 }), UnavailableError);
  assert.equal(ran, false);
  // the right event's verdict still goes through
  const ok = client(async () => json(200, { verdict: { event_id: "mine", action: "allow" }, approval: null }));
  assert.ok(isAllowed(await ok.verdict("mine")));
});

test("other malformed answers are typed errors", async () => {
  const wrong = async (url) => new URL(url).pathname === "/v1/whoami"
    ? json(200, { project_id: 5 })
    : json(200, { items: "notalist", event_id: 7, results: [{ index: "zero" }] });
  const rc = client(wrong);
  await assert.rejects(rc.pending(), (e) => e instanceof UnavailableError && /items/.test(e.message));
  await assert.rejects(rc.post(ev), (e) => e instanceof UnavailableError && /event_id/.test(e.message));
  await assert.rejects(rc.send(ev), (e) => e instanceof UnavailableError && e.status === 200);
  await assert.rejects(client(wrong, { projectId: undefined }).projectId(), UnavailableError);
});

test("close() waits at most its timeout; events not sent by then are rejected", async () => {
  // a gateway that never answers: each request ends at its own deadline (timeoutMs)
  const hang = async (url, init) => new Promise((_, reject) => {
    init.signal.addEventListener("abort", () => reject(new Error("aborted")));
  });
  const rc = client(hang, { timeoutMs: 1500, batchSize: 2, maxRetries: 0 });
  const sent = rc.sendMany([ev, ev, ev, ev]); // two requests of two, one after the other
  const settledAt = sent.map(() => Infinity);
  sent.forEach((p, i) => p.catch(() => { settledAt[i] = Date.now(); }));
  const started = Date.now();
  const { ms } = await took(rc.close(300));
  const closedAt = Date.now();
  assert.ok(ms < 1000, `close took ${ms} ms`);
  // the second request never started: its events were rejected "not sent" by close() itself
  await sleep(0);
  assert.ok(settledAt.slice(2).every((t) => t <= closedAt), JSON.stringify(settledAt.map((t) => t - started)));
  const settled = await Promise.allSettled(sent);
  assert.ok(settled.every((r) => r.status === "rejected"), JSON.stringify(settled));
  assert.ok(settled.slice(2).every((r) => r.reason instanceof UnavailableError && /not sent/.test(r.reason.message)),
    String(settled[2].reason));
  // the client stays usable: events sent after close() go out as usual
  let posted = 0;
  const ok = client(async () => { posted += 1; return json(200, { trace_id: "t", results: [{ index: 0, status: "accepted", event_id: "e1" }] }); });
  await took(ok.close(0));
  const [later] = ok.sendMany([ev]);
  await ok.close();
  assert.equal((await later).event_id, "e1");
  assert.equal(posted, 1);
});

test("close() with a wait longer than a timer can hold waits for everything", async () => {
  let answered = 0;
  const rc = client(async () => {
    await sleep(50);
    answered += 1;
    return json(200, { trace_id: "t", results: [{ index: 0, status: "accepted", event_id: "e1" }] });
  }, { batchSize: 1 });
  const sent = rc.sendMany([ev, ev]);
  await rc.close(Infinity);
  const settled = await Promise.allSettled(sent);
  assert.ok(settled.every((r) => r.status === "fulfilled"), JSON.stringify(settled));
  assert.equal(answered, 2);
});
