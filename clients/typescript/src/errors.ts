/** The SDK's errors: one class per way a call can fail, each carrying what the gateway said. */

export interface ErrorInfo {
  status?: number;
  code?: string;
  field?: string | null;
  traceId?: string;
}

export class RatchetError extends Error {
  readonly status: number;
  readonly code: string;
  /** Dotted path of the bad input (e.g. `payload.amount`, `events[3].priority`), if any. */
  readonly field: string | null;
  readonly traceId: string;
  constructor(message: string, info: ErrorInfo = {}) {
    super(message);
    this.name = new.target.name;
    this.status = info.status ?? 0;
    this.code = info.code ?? "";
    this.field = info.field ?? null;
    this.traceId = info.traceId ?? "";
  }
}

/** 401: a missing or wrong API key, or an event whose signature does not verify. */
export class AuthError extends RatchetError {}
/** 400/413/422: malformed request or event; `field` names what. */
export class ValidationError extends RatchetError {}
/** 404: no such event or verdict (or not decided yet). */
export class NotFoundError extends RatchetError {}
/** 409: the event id was used for another event, or the approval was already decided. */
export class ConflictError extends RatchetError {}
/** 429 after the retries; `retryAfterS` is the gateway's Retry-After. */
export class RateLimitedError extends RatchetError {
  readonly retryAfterS: number;
  constructor(message: string, info: ErrorInfo & { retryAfterS?: number } = {}) {
    super(message, info);
    this.retryAfterS = info.retryAfterS ?? 0;
  }
}
/** 5xx or no connection, after the retries. */
export class UnavailableError extends RatchetError {}
/** No verdict (or no human decision on a pause) within the timeout. */
export class DecisionTimeout extends RatchetError {
  readonly eventId: string;
  constructor(message: string, eventId: string) {
    super(message);
    this.eventId = eventId;
  }
}
/** A paused event was neither approved nor rejected within the timeout. */
export class ApprovalTimeout extends DecisionTimeout {}
/** A guarded call was refused: verdict `reject`, or a person rejected the pause. */
export class ActionRejected extends RatchetError {
  readonly verdict: unknown;
  constructor(message: string, verdict: unknown) {
    super(message);
    this.verdict = verdict;
  }
}

const BY_STATUS: Record<number, new (m: string, i: ErrorInfo) => RatchetError> = {
  400: ValidationError, 401: AuthError, 403: AuthError, 404: NotFoundError, 409: ConflictError,
  413: ValidationError, 422: ValidationError,
};

export function retryAfterS(headers: Headers | undefined): number | undefined {
  const raw = headers?.get("retry-after");
  if (raw === null || raw === undefined) return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** The error for a gateway answer `{error, field, message}` (or text). */
export function errorFor(status: number, body: unknown, headers?: Headers): RatchetError {
  const b = (body && typeof body === "object" ? body : {}) as Record<string, unknown>;
  const message = String(b.message ?? b.error ?? (typeof body === "string" && body ? body.slice(0, 500) : `HTTP ${status}`));
  const info: ErrorInfo = {
    status, code: typeof b.error === "string" ? b.error : "",
    field: b.field === undefined || b.field === null ? null : String(b.field),
    traceId: headers?.get("x-trace-id") ?? "",
  };
  if (status === 429) return new RateLimitedError(message, { ...info, retryAfterS: retryAfterS(headers) ?? 0 });
  const cls = BY_STATUS[status] ?? (status >= 500 ? UnavailableError : RatchetError);
  return new cls(message, info);
}
