// The TypeScript SDK against a real gateway and worker: the payloads a sorted-key
// JSON.stringify signer got 401 for, batching, retries counted once, typed errors, and a
// guarded call that blocks on a pause until a person approves or rejects it.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  ActionRejected, AuthError, ConflictError, RatchetClient, UnavailableError, ValidationError,
  finalAction, isAllowed,
} from "../dist/index.js";
import { startStack } from "./stack.mjs";

let stack;
let creds;
const client = (options = {}) => new RatchetClient({
  baseUrl: creds.url, apiKey: creds.api_key, agentId: creds.agent_id, agentSecret: creds.agent_secret, ...options,
});
const ev = (service, fields = {}) => ({ service, action: "read", payload: { id: 1 }, ...fields });

/** The real fetch, recording requests; `lose` drops the answer of the first request to a path. */
function recordingFetch(lose) {
  const seen = [];
  const impl = async (url, init) => {
    const resp = await fetch(url, init);
    const text = await resp.text();
    seen.push({ path: new URL(url).pathname, init, status: resp.status, headers: resp.headers, text });
    if (lose && new URL(url).pathname === lose) {
      lose = undefined;
      throw new TypeError("fetch failed: connection reset after the request was sent");
    }
    return new Response(text, { status: resp.status, headers: resp.headers });
  };
  return { impl, seen, lose: (path) => { lose = path; } };
}

describe("against a real gateway and worker", () => {
  before(async () => { stack = await startStack(); creds = stack.creds; });
  after(async () => { await stack?.stop(); });

  test("floats, non-BMP keys and non-ASCII text are accepted and decided", async () => {
    const rc = client();
    const payloads = [{ amount: 12.5 }, { name: "café ☕" }, { rate: 0.00005 }, { rate: 1e-7 },
      { "😀": 1, "｡": 2 }, { zero: -0 }];
    for (const payload of payloads) {
      const verdict = await rc.decide(ev("portable", { payload, run_id: `p-${randomUUID()}` }), { waitMs: 3000, timeoutMs: 60_000 });
      assert.ok(["allow", "flag", "pause", "reject"].includes(verdict.action), JSON.stringify(verdict));
      assert.equal(typeof verdict.score, "number");
      assert.ok(Array.isArray(verdict.reasons));
    }
  });

  test("sendMany batches by size and every event is accepted", async () => {
    const rec = recordingFetch();
    const rc = client({ batchSize: 50, lingerMs: 300, fetch: rec.impl });
    const accepted = await Promise.all(rc.sendMany(Array.from({ length: 120 }, (_, i) => ev("batching", { run_id: `b${Math.floor(i / 3)}` }))));
    assert.equal(new Set(accepted.map((a) => a.event_id)).size, 120);
    const sizes = rec.seen.filter((s) => s.path === "/v1/events:batch").map((s) => JSON.parse(s.init.body).events.length);
    assert.deepEqual(sizes, [50, 50, 20]);
    const last = await rc.waitForDecision(accepted.at(-1).event_id, 60_000);
    assert.equal(last.event_id, accepted.at(-1).event_id);
    await rc.close();
  });

  test("a retried request is answered from the first one, not counted again", async () => {
    const rec = recordingFetch("/v1/events");
    const rc = client({ backoffMs: 50, fetch: rec.impl });
    await rc.post(ev("retrying"));
    const posts = rec.seen.filter((s) => s.path === "/v1/events");
    assert.equal(posts.length, 2);
    assert.equal(posts[0].init.headers["Idempotency-Key"], posts[1].init.headers["Idempotency-Key"]);
    assert.equal(posts[0].init.body, posts[1].init.body);
    assert.equal(posts[0].status, 202);
    assert.equal(posts[1].headers.get("idempotent-replayed"), "true");
    rec.lose("/v1/events:batch");
    const accepted = await Promise.all(rc.sendMany([ev("retrying"), ev("retrying")]));
    assert.equal(accepted.length, 2);
    const batches = rec.seen.filter((s) => s.path === "/v1/events:batch");
    assert.equal(batches.length, 2);
    assert.equal(batches[1].headers.get("idempotent-replayed"), "true");
  });

  test("errors are typed and name the field", async () => {
    const rc = client();
    await assert.rejects(rc.post(ev("errors", { priority: "urgent" })),
      (e) => e instanceof ValidationError && e.status === 400 && e.field === "priority");
    await assert.rejects(rc.send(ev("errors", { priority: "urgent" })),  // as post names it
      (e) => e instanceof ValidationError && e.field === "priority");
    await assert.rejects(rc.post(ev("errors", { payload: { n: 2 ** 53 + 2 } })), ValidationError);
    // an unsignable event fails alone; the rest of its batch goes through
    const [badOne, goodOne] = rc.sendMany([ev("errors", { payload: { n: 2 ** 53 + 2 } }), ev("errors")]);
    await assert.rejects(badOne, ValidationError);
    assert.ok((await goodOne).event_id);
    const first = ev("errors", { event_id: randomUUID() });
    await rc.post(first);
    await assert.rejects(rc.post({ ...first, payload: { id: 2 } }), ConflictError);
    await assert.rejects(client({ agentSecret: "as_wrong" }).post(ev("errors")),
      (e) => e instanceof AuthError && /bad signature/.test(e.message));
    await assert.rejects(client({ apiKey: "rk_wrong" }).post(ev("errors")), AuthError);
    await assert.rejects(new RatchetClient({ baseUrl: "http://127.0.0.1:9", apiKey: "rk", agentId: "a",
      agentSecret: "s", projectId: "p", maxRetries: 1, backoffMs: 10 }).post(ev("errors")), UnavailableError);
  });

  test("a guarded call blocks on pause until a person approves or rejects it", async () => {
    // A new agent: a service new to an agent established on other services acts by the agent's
    // mode until its own chain has footing (30 runs); this agent has no other services.
    const registered = await fetch(`${creds.url}/v1/agents`, {
      method: "POST", headers: { Authorization: `Bearer ${creds.api_key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ agent_id: `guard-${randomUUID().slice(0, 8)}` }),
    });
    assert.equal(registered.status, 201);
    const agent = await registered.json();
    const rc = client({ agentId: agent.agent_id, agentSecret: agent.agent_secret });
    const service = `warehouse-${randomUUID().slice(0, 6)}`;
    const shapes = { a: { ticket: 1, text: "x" }, b: { query: "refund", limit: 5 }, c: { reply: "done", close: true } };
    const training = [];
    for (let r = 0; r < 12; r++) {
      for (const k of "abc") {
        training.push({ service, action: `step.${k}`, payload: shapes[k], priority: "critical", run_id: `t${r}`, end_of_run: k === "c" });
      }
    }
    const accepted = await Promise.all(rc.sendMany(training));
    await rc.waitForDecision(accepted.at(-1).event_id, 60_000);

    const person = async (decision) => {   // another party deciding the first paused event
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        // this agent's paused event (the shared project holds other tests' paused events)
        const mine = await rc.pending(100, agent.agent_id);
        assert.ok(mine.every((v) => v.agent_id === agent.agent_id));
        const first = mine[0];
        if (first) { await rc.resolve(first.event_id, decision, "checked by the test"); return; }
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const calls = [];
    const exportTable = rc.guard(service, "step.novel", async (args) => { calls.push(args); return "exported"; },
      { priority: "critical", runId: "odd-1", timeoutMs: 60_000 });
    const [result] = await Promise.all([exportTable({ export: { table: "customers", all: true } }), person("approve")]);
    assert.equal(result, "exported");
    assert.deepEqual(calls, [{ export: { table: "customers", all: true } }]);

    const drop = rc.guard(service, "step.drop", async (args) => { calls.push(args); return "dropped"; },
      { priority: "critical", runId: "odd-2", timeoutMs: 60_000 });
    const [refused] = await Promise.all([drop({ table: "customers" }).catch((e) => e), person("reject")]);
    assert.ok(refused instanceof ActionRejected, String(refused));
    assert.equal(refused.verdict.action, "pause");
    assert.equal(finalAction(refused.verdict), "reject");
    assert.equal(isAllowed(refused.verdict), false);
    assert.equal(calls.length, 1);
  });
});
