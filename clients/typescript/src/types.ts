/** Typed answers of the gateway. */

export type Action = "allow" | "flag" | "pause" | "reject";

export interface Reason {
  source: string;
  action: Action;
  detail: Record<string, unknown>;
}

export interface Approval {
  decision: "approve" | "reject";
  reason: string;
  actor: string;
  decided_at: number;
}

export interface Verdict {
  event_id: string;
  action: Action;
  mode: string;
  anomalous: boolean;
  score: number;
  threshold: number;
  reasons: Reason[];
  trace_id: string;
  decided_at: number;
  held: boolean;
  error?: string;
  /** A person's decision on a paused event (null until there is one). */
  approval: Approval | null;
  [field: string]: unknown;
}

export interface Accepted {
  event_id: string;
  trace_id: string;
}

/** Paused and not decided by a person yet. */
export function isPaused(v: Verdict): boolean {
  return v.action === "pause" && !v.approval;
}

/** What to do now: a person's decision overrides `pause`. */
export function finalAction(v: Verdict): Action {
  if (v.action === "pause" && v.approval) return v.approval.decision === "approve" ? "allow" : "reject";
  return v.action;
}

/** The call may go ahead (`allow`, `flag`, or an approved pause). */
export function isAllowed(v: Verdict): boolean {
  const a = finalAction(v);
  return a === "allow" || a === "flag";
}

export function toVerdict(verdict: Record<string, unknown>, approval?: unknown): Verdict {
  return { ...(verdict as object), approval: (approval as Approval | null | undefined) ?? null } as Verdict;
}
