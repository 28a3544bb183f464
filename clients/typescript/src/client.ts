/**
 * The client: signed events, a background batcher, retries under one Idempotency-Key, typed
 * verdicts, and guarded tool calls that block on a pause until a person decides.
 *
 * Retries: network failures, 429, 502–504 and a 409 carrying Retry-After (an Idempotency-Key
 * still in progress) are retried up to `maxRetries` times, waiting Retry-After when the gateway
 * sends one (at most `maxRetryAfterS`), otherwise an exponential backoff with full jitter. Every
 * retry resends the same request under the same Idempotency-Key, so nothing is counted twice.
 */
import { randomUUID } from "node:crypto";
import {
  ActionRejected, ApprovalTimeout, DecisionTimeout, RatchetError, UnavailableError,
  ValidationError, errorFor, retryAfterS,
} from "./errors.js";
import { type Event, type JsonValue, assertPortable, signEvent } from "./signing.js";
import { type Accepted, type Verdict, isAllowed, isPaused, toVerdict } from "./types.js";

/** Largest answer read (bytes): the gateway's largest, a page of 500 approvals, is well under
 * 1 MB. A longer answer is refused (UnavailableError) while it streams. */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** `code` of the UnavailableError of a call that ran out of time. */
export const TIMEOUT_CODE = "timeout";
const ACTIONS = new Set(["allow", "flag", "pause", "reject"]);
type Json = Record<string, any>;

export interface ClientOptions {
  baseUrl: string;
  apiKey: string;
  agentId: string;
  agentSecret: string;
  /** The API key's project; asked with GET /v1/whoami when omitted. */
  projectId?: string;
  /** run_id of events that set none (default: one fresh id per client). */
  runId?: string;
  timeoutMs?: number;
  maxRetries?: number;
  backoffMs?: number;
  backoffMaxMs?: number;
  maxRetryAfterS?: number;
  /** Batcher: most events per request, and how long the first waits for more. */
  batchSize?: number;
  lingerMs?: number;
  /** Largest batch body sent: the gateway's RATCHET_MAX_BODY_BYTES (4 MiB by default); queued
   * events that would not fit together go in several requests. */
  maxBatchBytes?: number;
  pollIntervalMs?: number;
  /** Longest long poll asked of the gateway: its RATCHET_MAX_WAIT_MS (default 5000). */
  maxWaitMs?: number;
  /** Largest answer read from the gateway, bytes (default 16 MiB; past it: UnavailableError). */
  maxResponseBytes?: number;
  /** A fetch implementation (default: the global one of Node >= 18). */
  fetch?: typeof fetch;
  /** Called with the error of every event of send/sendMany that failed — refused before
   * sending, or answered with an error — whether or not its promise is awaited too (such a
   * promise never crashes the process; an onError that throws is ignored). */
  onError?: (err: RatchetError) => void;
}

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  params?: Record<string, string>;
  body?: string;
}

interface Pending {
  event: Event;
  tries: number;
  resolve: (a: Accepted) => void;
  reject: (e: unknown) => void;
}

const RETRY_STATUSES = new Set([429, 502, 503, 504]);
/** How long close() waits for queued events by default (ms), as the Python client. */
const CLOSE_TIMEOUT_MS = 10_000;
/** The longest wait setTimeout keeps (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMER_MS = 2_147_483_647;
const MAX_WAIT_MS = 5000;
const ITEM_STATUS: Record<string, number> = {
  invalid_request: 400, unauthorized: 401, conflict: 409, payload_too_large: 413,
  unavailable: 503, rate_limited: 429,
};
/** Item answers the batcher sends again in a later request (up to maxRetries times): Kafka did
 * not take the event (503), or the batch's events together were over the gateway's value budget
 * from this one on (413). */
const SEND_AGAIN = new Set([413, 503]);
const BATCH_HEAD = '{"events":[';
const BATCH_TAIL = "]}";
/** Bytes signing adds to an event in a batch: "signature":"v2=<64 hex>", "timestamp":<10
 * digits> and their commas (a little more than they take). */
const SIGNED_EXTRA = 112;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** The event field an unportable value sits in (`payload.n`), as the gateway would name it. */
const unportableField = (e: unknown): string =>
  String((e as { path?: string }).path ?? "event.payload").replace(/^event\.?/, "") || "payload";

export interface CheckpointOptions {
  timeoutMs?: number;
  waitMs?: number;
  runId?: string;
  priority?: "low" | "normal" | "high" | "critical";
  [field: string]: JsonValue | undefined;
}

export class RatchetClient {
  private readonly o: Required<Omit<ClientOptions, "projectId" | "fetch" | "onError">> &
    Pick<ClientOptions, "onError">;
  private project: string | undefined;
  private readonly fetchImpl: typeof fetch;
  private queue: Pending[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inflight: Promise<void> = Promise.resolve();
  /** Advanced when close() runs out of time: a batch of an older epoch is not sent (again). */
  private epoch = 0;
  /** Batches handed to the send chain and not started yet. */
  private waiting = new Set<Pending[]>();

  constructor(options: ClientOptions) {
    this.o = {
      baseUrl: options.baseUrl.replace(/\/+$/, ""),
      apiKey: options.apiKey, agentId: options.agentId, agentSecret: options.agentSecret,
      runId: options.runId ?? `run-${randomUUID().slice(0, 12)}`,
      timeoutMs: options.timeoutMs ?? 10_000, maxRetries: options.maxRetries ?? 4,
      backoffMs: options.backoffMs ?? 200, backoffMaxMs: options.backoffMaxMs ?? 5000,
      maxRetryAfterS: options.maxRetryAfterS ?? 30, batchSize: options.batchSize ?? 100,
      lingerMs: options.lingerMs ?? 50, pollIntervalMs: options.pollIntervalMs ?? 250,
      maxWaitMs: options.maxWaitMs ?? MAX_WAIT_MS, onError: options.onError,
      maxBatchBytes: options.maxBatchBytes ?? 4 * 1024 * 1024,
      maxResponseBytes: options.maxResponseBytes ?? MAX_RESPONSE_BYTES,
    };
    if (this.o.batchSize < 1 || this.o.batchSize > 1000) throw new RangeError("batchSize must be 1 to 1000");
    if (!(this.o.maxBatchBytes >= 1024)) {
      throw new RangeError("maxBatchBytes must be at least 1024 (the gateway's RATCHET_MAX_BODY_BYTES; 4 MiB by default)");
    }
    this.project = options.projectId;
    this.fetchImpl = options.fetch ?? fetch;
  }

  // --- HTTP with retries ----------------------------------------------------------------------
  private headers(idempotencyKey?: string): Record<string, string> {
    const h: Record<string, string> = {
      Authorization: `Bearer ${this.o.apiKey}`, "Content-Type": "application/json",
    };
    if (idempotencyKey) h["Idempotency-Key"] = idempotencyKey;
    return h;
  }

  /** Milliseconds to wait before the next attempt, or undefined: give up (also when the wait
   * would end at or past `deadline`: a call never sleeps past its timeout). */
  private retryDelayMs(attempt: number, status?: number, headers?: Headers, deadline?: number): number | undefined {
    const delay = this.retryDelay(attempt, status, headers);
    if (delay !== undefined && deadline !== undefined && Date.now() + delay >= deadline) return undefined;
    return delay;
  }

  private retryDelay(attempt: number, status?: number, headers?: Headers): number | undefined {
    if (attempt >= this.o.maxRetries) return undefined;
    const after = retryAfterS(headers);
    if (status !== undefined) {
      if (status === 409 && after === undefined) return undefined;
      if (!RETRY_STATUSES.has(status) && status !== 409) return undefined;
    }
    if (after !== undefined) return after <= this.o.maxRetryAfterS ? after * 1000 : undefined;
    return Math.random() * Math.min(this.o.backoffMaxMs, this.o.backoffMs * 2 ** attempt);
  }

  /** Send `req` (retried as the module says) and read its answer, all before `deadline`
   * (ms since the epoch; default: timeoutMs plus a long poll's wait_ms from now). A 2xx answer
   * must be a JSON object that `parse` accepts: otherwise an UnavailableError (code
   * malformed_answer) with the status and trace id. */
  private async call<T = Json>(req: Req, opts: { deadline?: number; parse?: (body: Json) => T } = {}): Promise<T> {
    const url = new URL(this.o.baseUrl + req.path);
    for (const [k, v] of Object.entries(req.params ?? {})) url.searchParams.set(k, v);
    const deadline = opts.deadline ?? Date.now() + this.o.timeoutMs + Number(req.params?.wait_ms ?? 0);
    for (let attempt = 0; ; attempt++) {
      if (Date.now() >= deadline) throw timedOut(req);
      let delay: number | undefined;
      try {
        const { status, headers, text } = await this.attempt(url, req, deadline);
        if (status >= 200 && status < 300) return parseAnswer(status, headers, text, opts.parse);
        let body: unknown = text;
        try { body = text ? JSON.parse(text) : null; } catch { /* not JSON: keep the text */ }
        const error = errorFor(status, body, headers);
        delay = this.retryDelayMs(attempt, status, headers, deadline);
        if (delay === undefined) throw error;
      } catch (e) {
        if (e instanceof RatchetError) throw e;
        if (Date.now() >= deadline - 5) throw timedOut(req);
        delay = this.retryDelayMs(attempt, undefined, undefined, deadline);
        if (delay === undefined) {
          // fetch's own message is "fetch failed": the reason is in its cause (ECONNREFUSED, …)
          const cause = (e as { cause?: { code?: string; message?: string } }).cause;
          const why = cause ? ` (${cause.code ?? cause.message ?? String(cause)})` : "";
          throw new UnavailableError(`gateway unreachable: ${String(e)}${why}`);
        }
      }
      await sleep(delay);
    }
  }

  /** One HTTP exchange over by `deadline`: the request is aborted then, and the body is read
   * chunk by chunk, at most maxResponseBytes of it (never buffered whole first). */
  private async attempt(url: URL, req: Req, deadline: number): Promise<{ status: number; headers: Headers; text: string }> {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<typeof EXPIRED>((r) => {
      timer = setTimeout(() => { abort.abort(); r(EXPIRED); }, Math.max(0, deadline - Date.now()));
    });
    try {
      const resp = await Promise.race([
        this.fetchImpl(url, { method: req.method, headers: req.headers, body: req.body, signal: abort.signal }),
        expired,
      ]);
      if (resp === EXPIRED) throw timedOut(req);
      const tooLarge = () => new UnavailableError(
        `the gateway's answer (HTTP ${resp.status}) is too large: over ${this.o.maxResponseBytes} bytes (a gateway answers far less; is baseUrl right?)`,
        { status: resp.status, code: "answer_too_large", traceId: resp.headers.get("x-trace-id") ?? "" });
      if (Number(resp.headers.get("content-length") ?? 0) > this.o.maxResponseBytes) {
        resp.body?.cancel().catch(() => {});
        throw tooLarge();
      }
      const chunks: Uint8Array[] = [];
      if (resp.body) {
        const reader = resp.body.getReader();
        let size = 0;
        try {
          for (;;) {
            const next = await Promise.race([reader.read(), expired]);
            if (next === EXPIRED) throw timedOut(req);
            if (next.done) break;
            size += next.value.byteLength;
            if (size > this.o.maxResponseBytes) throw tooLarge();
            chunks.push(next.value);
          }
        } catch (e) {
          reader.cancel().catch(() => {});
          throw e;
        }
      }
      return { status: resp.status, headers: resp.headers, text: new TextDecoder().decode(Buffer.concat(chunks)) };
    } finally {
      clearTimeout(timer);
      abort.abort(); // a body left unread (an error above) is not kept open
    }
  }

  /** The API key's project (asked once): part of every signature. */
  async projectId(deadline?: number): Promise<string> {
    if (!this.project) {
      this.project = await this.call({ method: "GET", path: "/v1/whoami", headers: this.headers() },
        { deadline, parse: (body) => {
          if (typeof body.project_id !== "string" || !body.project_id) throw new Error("whoami has no project_id");
          return body.project_id;
        } });
    }
    return this.project;
  }

  /** The event with agent_id, a fresh event_id and the client's run_id filled in. */
  complete(event: Event): Event {
    return { agent_id: this.o.agentId, event_id: randomUUID(), run_id: this.o.runId, payload: {}, ...event };
  }

  private sign(event: Event, ts: number, project: string): string {
    try {
      return signEvent(this.o.agentSecret, project, event, ts);
    } catch (e) {
      throw new ValidationError(String((e as Error).message), { field: unportableField(e) });
    }
  }

  private async single<T>(event: Event, waitMs: number, deadline: number, parse: (body: Json) => T): Promise<T> {
    const project = await this.projectId(deadline);
    const ts = Math.floor(Date.now() / 1000);
    const headers = this.headers(`ev-${randomUUID()}`);
    headers["X-Ratchet-Signature"] = this.sign(event, ts, project);
    headers["X-Ratchet-Timestamp"] = String(ts);
    const params = waitMs > 0 ? { wait_ms: String(Math.trunc(waitMs)) } : undefined;
    return this.call({ method: "POST", path: "/v1/events", headers, params, body: JSON.stringify(event) },
      { deadline, parse });
  }

  // --- sending --------------------------------------------------------------------------------
  /** Send one event now (POST /v1/events) without waiting for its verdict. */
  async post(event: Event): Promise<Accepted> {
    return this.single(this.complete(event), 0, Date.now() + this.o.timeoutMs, (body) => {
      if (typeof body.event_id !== "string" || !body.event_id) throw new Error("no event_id");
      return { event_id: body.event_id, trace_id: String(body.trace_id ?? "") };
    });
  }

  /** Queue one event for the batcher. */
  send(event: Event): Promise<Accepted> {
    return this.sendMany([event])[0]!;
  }

  /** Queue events for the batcher (batchSize per request, or lingerMs after the first). */
  sendMany(events: Event[]): Promise<Accepted>[] {
    const promises = events.map((e) => {
      const event = this.complete(e);
      try {
        assertPortable(event); // one unsignable event must not fail a whole batch
      } catch (err) {
        return Promise.reject(new ValidationError(String((err as Error).message), { field: unportableField(err) }));
      }
      return new Promise<Accepted>((resolve, reject) => {
        this.queue.push({ event, tries: 0, resolve, reject });
      });
    });
    // fire-and-forget must not crash the process: a promise nobody awaits is handled here (an
    // awaited one still rejects for its caller), and the failure goes to onError if given
    for (const p of promises) {
      p.catch((err: unknown) => {
        try { this.o.onError?.(err as RatchetError); } catch { /* a failing logger must not crash */ }
      });
    }
    this.schedule();
    return promises;
  }

  /** Wait until every queued event has been answered. */
  async flush(): Promise<void> {
    // until nothing is queued and no request started while waiting (a linger timer may start
    // one for events sent meanwhile)
    for (;;) {
      while (this.queue.length > 0) this.drain(true);
      const waited = this.inflight;
      await waited;
      if (this.queue.length === 0 && this.inflight === waited) return;
    }
  }

  /** Send what is queued, waiting at most `timeoutMs` (default 10 s; `null`: as long as
   * sending takes); events not sent by then are rejected with an UnavailableError. The client
   * holds no other resources (a request already sent runs on to its own deadline). */
  async close(timeoutMs: number | null = CLOSE_TIMEOUT_MS): Promise<void> {
    // setTimeout cannot wait longer than 2^31 - 1 ms (it would fire at once): wait for all
    if (timeoutMs === null || !(timeoutMs <= MAX_TIMER_MS)) return this.flush();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<typeof EXPIRED>((r) => { timer = setTimeout(() => r(EXPIRED), Math.max(0, timeoutMs)); });
    try {
      if ((await Promise.race([this.flush(), expired])) === EXPIRED) this.abandon();
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reject, now, what is not sent yet — queued, or in a batch still waiting for its turn —
   * and what a request in flight would send again (close ran out of time). Events sent later
   * go out as usual. */
  private abandon(): void {
    this.epoch += 1;
    if (this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined; }
    for (const item of this.queue.splice(0)) item.reject(notSent());
    for (const batch of this.waiting) for (const item of batch) item.reject(notSent());
    this.waiting.clear();
  }

  private schedule(): void {
    while (this.queue.length >= this.o.batchSize) this.drain(false);
    if (this.queue.length > 0 && this.timer === undefined) {
      this.timer = setTimeout(() => { this.timer = undefined; this.drain(true); }, this.o.lingerMs);
    }
  }

  private drain(all: boolean): void {
    if (all && this.timer !== undefined) { clearTimeout(this.timer); this.timer = undefined; }
    const batch = this.queue.splice(0, this.o.batchSize);
    if (batch.length === 0) return;
    const epoch = this.epoch;
    this.waiting.add(batch);
    this.inflight = this.inflight.then(() => {
      this.waiting.delete(batch);
      return this.postBatch(batch, epoch);
    });
  }

  /** Send queued items: in requests of at most maxBatchBytes, in order. Sizes are measured
   * before signing (signing adds SIGNED_EXTRA bytes at most); each request is signed when it is
   * sent, so one waiting behind another's retries is not signed stale. */
  private async postBatch(batch: Pending[], epoch: number): Promise<void> {
    if (epoch !== this.epoch) return; // rejected by abandon()
    const parts: Pending[][] = [];
    let cur: Pending[] = [];
    let size = BATCH_HEAD.length + BATCH_TAIL.length;
    for (const p of batch) {
      const n = Buffer.byteLength(JSON.stringify(p.event)) + SIGNED_EXTRA + 1;
      if (cur.length > 0 && size + n > this.o.maxBatchBytes) {
        parts.push(cur);
        cur = [];
        size = BATCH_HEAD.length + BATCH_TAIL.length;
      }
      cur.push(p);
      size += n;
    }
    if (cur.length > 0) parts.push(cur);
    for (const part of parts) await this.postPart(part, epoch);
  }

  /** One batch request of `part`; items answered 503 or 413 go again at once, before anything
   * queued later (an agent's events keep their order); a request refused as too large (413: the
   * gateway's limit is smaller) is split in two. A 413 after the same request accepted others
   * costs no try (the next request gets further); any other resend costs one. */
  private async postPart(part: Pending[], epoch: number): Promise<void> {
    while (part.length > 0) {
      if (epoch !== this.epoch) { // close() gave up on it: not sent (again)
        for (const item of part) item.reject(notSent());
        return;
      }
      let results: Array<[Accepted | null, RatchetError | null]>;
      try {
        const project = await this.projectId();
        const ts = Math.floor(Date.now() / 1000);
        const bodies = part.map((p) => JSON.stringify({ ...p.event, signature: this.sign(p.event, ts, project), timestamp: ts }));
        const body = await this.call({
          method: "POST", path: "/v1/events:batch", headers: this.headers(`batch-${randomUUID()}`),
          body: BATCH_HEAD + bodies.join(",") + BATCH_TAIL,
        }, { parse: (b) => {
          if (!Array.isArray(b.results)) throw new Error("results is not a list");
          for (const r of b.results) {
            if (!isObject(r) || !Number.isInteger(r.index)) throw new Error("a result's index is not an integer");
            if (r.status === "accepted" && typeof r.event_id !== "string") throw new Error("an accepted result has no event_id");
          }
          return b;
        } });
        results = part.map(() => [null, new RatchetError("no result for this item")]);
        for (const r of body.results) {
          const i = Number(r.index);
          if (!(i >= 0 && i < part.length)) continue;
          if (r.status === "accepted") results[i] = [{ event_id: String(r.event_id), trace_id: String(body.trace_id ?? "") }, null];
          else {
            // the gateway names the field in ITS batch (events[7].priority): name it in the event
            const error = { ...(isObject(r.error) ? r.error : {}) };
            const own = `events[${i}]`;
            if (typeof error.field === "string" && error.field.startsWith(own)) {
              error.field = error.field.slice(own.length).replace(/^\./, "") || null;
            }
            results[i] = [null, errorFor(ITEM_STATUS[String(r.error?.error)] ?? 400, error,
              new Headers({ "x-trace-id": String(body.trace_id ?? "") }))];
          }
        }
      } catch (e) {
        const err = e instanceof RatchetError ? e : new UnavailableError(String(e));
        if (err.status === 413 && part.length > 1) {
          const half = Math.floor(part.length / 2);
          await this.postPart(part.slice(0, half), epoch);
          await this.postPart(part.slice(half), epoch);
          return;
        }
        part.forEach((p) => p.reject(err));
        return;
      }
      const progress = results.some(([ok]) => ok !== null);
      const again: Pending[] = [];
      let brokerRefused = false;
      part.forEach((p, i) => {
        const [ok, err] = results[i]!;
        if (err && err.status === 413 && progress) again.push(p);
        else if (err && SEND_AGAIN.has(err.status) && p.tries < this.o.maxRetries) {
          p.tries += 1;
          brokerRefused ||= err.status === 503;
          again.push(p);
        } else if (err) p.reject(err);
        else p.resolve(ok!);
      });
      if (brokerRefused) await sleep(this.retryDelayMs(0) ?? 0);
      part = again;
    }
  }

  // --- verdicts -------------------------------------------------------------------------------
  /** The event's verdict with the human decision, or null if not decided yet (over within
   * timeoutMs plus waitMs). */
  async verdict(eventId: string, waitMs = 0): Promise<Verdict | null> {
    return this.verdictBy(eventId, waitMs);
  }

  private async verdictBy(eventId: string, waitMs: number, deadline?: number): Promise<Verdict | null> {
    const wait = Math.min(Math.trunc(waitMs), this.o.maxWaitMs);
    const params = wait > 0 ? { wait_ms: String(wait) } : undefined;
    try {
      return await this.call({
        method: "GET", path: `/v1/verdicts/${encodeURIComponent(eventId)}`, headers: this.headers(), params,
      }, { deadline, parse: (body) => checkedVerdict(body.verdict, eventId, body.approval) });
    } catch (e) {
      if (e instanceof RatchetError && e.status === 404) return null;
      throw e;
    }
  }

  /** Send one event now and return its verdict (waits waitMs on the request, then polls). The
   * whole call — retries and Retry-After waits included — is over within timeoutMs. */
  async decide(event: Event, opts: { waitMs?: number; timeoutMs?: number } = {}): Promise<Verdict> {
    const item = this.complete(event);
    const eventId = String(item.event_id);
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    const verdict = await this.single(item, longPollMs(opts.waitMs ?? 2000, deadline), deadline,
      (body) => body.status === "decided" ? checkedVerdict(body.verdict, eventId, null) : null);
    if (verdict) return verdict;
    return this.poll(eventId, deadline, false);
  }

  /** Resolve when a paused event is approved or rejected (ApprovalTimeout after timeoutMs). */
  waitForDecision(eventId: string, timeoutMs = 300_000): Promise<Verdict> {
    return this.poll(eventId, Date.now() + timeoutMs, true);
  }

  private async poll(eventId: string, deadline: number, needHuman: boolean): Promise<Verdict> {
    let last: Verdict | null = null;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const started = Date.now();
      try {
        last = await this.verdictBy(eventId, longPollMs(remaining, deadline), deadline);
      } catch (e) {
        if (e instanceof UnavailableError && e.code === TIMEOUT_CODE) break;
        throw e;
      }
      if (last && !(needHuman && isPaused(last))) return last;
      if (Date.now() - started < this.o.pollIntervalMs) {
        await sleep(Math.min(this.o.pollIntervalMs, Math.max(0, deadline - Date.now())));
      }
    }
    if (last && isPaused(last)) throw new ApprovalTimeout(`event ${eventId} is still paused`, eventId);
    throw new DecisionTimeout(`no verdict for event ${eventId} yet`, eventId);
  }

  // --- approvals (admin) ----------------------------------------------------------------------
  async resolve(eventId: string, decision: "approve" | "reject", reason = ""): Promise<Record<string, unknown>> {
    return this.call({
      method: "POST", path: `/v1/approvals/${encodeURIComponent(eventId)}`, headers: this.headers(),
      body: JSON.stringify({ decision, reason }),
    });
  }

  /** Paused events waiting for a person, oldest first (`agentId`: that agent's only). */
  async pending(limit = 100, agentId?: string): Promise<Verdict[]> {
    const params: Record<string, string> = { limit: String(limit) };
    if (agentId !== undefined) params.agent_id = agentId;
    return this.call({ method: "GET", path: "/v1/approvals", headers: this.headers(), params },
      { parse: (body) => {
        if (body.items === undefined || body.items === null) return [];
        if (!Array.isArray(body.items)) throw new Error("items is not a list");
        return body.items.map((v: unknown) => checkedVerdict(v, null, null));
      } });
  }

  // --- guarding tool calls --------------------------------------------------------------------
  /** Ask before doing: resolves with the verdict if allowed (a pause waits for a person);
   * throws ActionRejected if refused, ApprovalTimeout if nobody decided in time. */
  async checkpoint(service: string, action: string, payload: Record<string, JsonValue> = {},
                   opts: CheckpointOptions = {}): Promise<Verdict> {
    const { timeoutMs = 300_000, waitMs = 2000, runId, ...fields } = opts;
    const event: Event = { ...fields, service, action, payload };
    if (runId) event.run_id = runId;
    let verdict = await this.decide(event, { waitMs, timeoutMs: Math.min(timeoutMs, 30_000) });
    if (isPaused(verdict)) verdict = await this.waitForDecision(verdict.event_id, timeoutMs);
    if (!isAllowed(verdict)) throw new ActionRejected(`${service}/${action} refused`, verdict);
    return verdict;
  }

  /** Wrap a tool function: each call is an event (payload: `payload(...args)`, or the first
   * argument when it is an object) and runs only if allowed — see checkpoint. */
  guard<A extends unknown[], R>(service: string, action: string, fn: (...args: A) => R | Promise<R>,
                                opts: CheckpointOptions & { payload?: (...args: A) => Record<string, JsonValue> } = {}
  ): (...args: A) => Promise<R> {
    const { payload, ...rest } = opts;
    return async (...args: A) => {
      const first = args[0];
      const body = payload ? payload(...args)
        : first !== null && typeof first === "object" && !Array.isArray(first) ? first as Record<string, JsonValue>
          : { args: args as unknown as JsonValue[] };
      await this.checkpoint(service, action, body, rest);
      return fn(...args);
    };
  }
}

const EXPIRED = Symbol("expired");

function notSent(): UnavailableError {
  return new UnavailableError("not sent: the client was closed before the gateway took it");
}

const isObject = (v: unknown): v is Json => v !== null && typeof v === "object" && !Array.isArray(v);

function timedOut(req: Req): UnavailableError {
  return new UnavailableError(`no answer from the gateway to ${req.method} ${req.path} within the call's timeout`,
    { code: TIMEOUT_CODE });
}

/** `waitMs` shortened so that the gateway's answer can arrive before `deadline`. */
function longPollMs(waitMs: number, deadline: number): number {
  const remaining = deadline - Date.now();
  return Math.max(0, Math.min(Math.trunc(waitMs), Math.trunc(remaining - Math.min(1000, remaining / 5))));
}

/** A 2xx answer: a JSON object `parse` accepts, else UnavailableError (malformed_answer). */
function parseAnswer<T>(status: number, headers: Headers, text: string, parse?: (body: Json) => T): T {
  const malformed = (why: string) => new UnavailableError(
    `the gateway's answer (HTTP ${status}) is malformed: ${why.slice(0, 200)}`,
    { status, code: "malformed_answer", traceId: headers.get("x-trace-id") ?? "" });
  let body: unknown;
  try { body = JSON.parse(text); } catch { throw malformed("it is not JSON"); }
  if (!isObject(body)) throw malformed("it is not a JSON object");
  if (!parse) return body as T;
  try {
    return parse(body);
  } catch (e) {
    throw malformed(e instanceof Error ? e.message : String(e));
  }
}

/** The verdict of a well-formed answer, about `eventId` if given: a verdict of another event is
 * refused (a guard must never act on it). */
function checkedVerdict(v: unknown, eventId: string | null, approval: unknown): Verdict {
  if (!isObject(v)) throw new Error("the verdict is not an object");
  if (!ACTIONS.has(v.action)) throw new Error("the verdict's action is not one of allow, flag, pause, reject");
  if (typeof v.event_id !== "string" || !v.event_id) throw new Error("the verdict has no event_id");
  if (eventId !== null && v.event_id !== eventId) {
    throw new Error(`the verdict is of event ${JSON.stringify(v.event_id.slice(0, 100))}, not of ${JSON.stringify(eventId.slice(0, 100))}`);
  }
  for (const k of ["score", "threshold", "decided_at"]) {
    if (v[k] !== undefined && v[k] !== null && typeof v[k] !== "number") throw new Error(`the verdict's ${k} is not a number`);
  }
  if (v.reasons !== undefined && v.reasons !== null && !Array.isArray(v.reasons)) throw new Error("the verdict's reasons are not a list");
  if (approval !== undefined && approval !== null
      && !(isObject(approval) && (approval.decision === "approve" || approval.decision === "reject"))) {
    throw new Error("the approval is not {decision: approve|reject, ...}");
  }
  return toVerdict(v, approval ?? null);
}
