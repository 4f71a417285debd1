// What an account test found, in one short line for the Accounts page.

import type { AccountTestResult } from "./api";
import { formatMs } from "./format";

/** Upstream's error messages can run long; the line shows this much and the tooltip all. */
const MAX_MESSAGE = 160;

export interface TestSummary {
  ok: boolean;
  text: string;
}

/**
 * "OK · 200 in 123 ms"; "Failed · 401 authentication_error: invalid x-api-key";
 * "Failed · proxy_unreachable via http://10.0.0.5:3128"; "Failed · test_timeout: no answer
 * within 8 s".
 */
export function describeTest(result: Pick<AccountTestResult, "ok" | "status" | "error_type" | "message" | "proxy" | "latency_ms">): TestSummary {
  if (result.ok) {
    return { ok: true, text: `OK · ${result.status ?? "—"} in ${formatMs(result.latency_ms)}` };
  }
  const what = [result.status, result.error_type].filter((part) => part !== null && part !== undefined && part !== "").join(" ");
  let text = `Failed · ${what || "no answer"}`;
  const message = result.message?.trim();
  if (message) text += `: ${message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message}`;
  if (result.proxy) text += ` via ${result.proxy}`;
  return { ok: false, text };
}

/** A test that got no result at all (the admin call itself failed). */
export function testFailed(reason: string): TestSummary {
  return { ok: false, text: `Failed · ${reason}` };
}
