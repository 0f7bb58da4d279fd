/** Shared by the tests: the shared test vectors, and a local HTTP server standing in for the
 * broker. */

import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

/** `sdk/test-vectors` (or `ISA_TEST_VECTORS`): the vectors every SDK runs. */
export const VECTORS_DIR =
  process.env["ISA_TEST_VECTORS"] ?? fileURLToPath(new URL("../../../test-vectors/", import.meta.url));

export function vectors<T>(file: string): T {
  const path = `${VECTORS_DIR.replace(/\/+$/, "")}/${file}`;
  const parsed = JSON.parse(readFileSync(path, "utf8")) as { version?: number };
  if (parsed.version !== 1) throw new Error(`${path}: version ${String(parsed.version)}, expected 1`);
  return parsed as T;
}

export interface WebhookCase {
  name: string;
  description: string;
  keys: string[];
  headers: Record<string, string>;
  body: string;
  now: number;
  tolerance: number;
  valid: boolean;
  error: null | "timestamp" | "signature";
}

export interface RecordCase {
  name: string;
  description: string;
  kind: "record" | "webhook";
  token: string;
  context: { message_id: string; delivery_id: string };
  valid: boolean;
  error: null | "malformed" | "unknown_key" | "misrouted" | "not_signed_by_broker";
  event: Record<string, unknown> | null;
}

export interface RecordVectors {
  version: 1;
  recipient: string;
  recipient_private_jwks: { keys: Record<string, unknown>[] };
  broker_delivery_signing_jwks: { keys: Record<string, unknown>[] };
  cases: RecordCase[];
}

export interface ProblemCase {
  name: string;
  description: string;
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
  expect: {
    code: string;
    status: number;
    title: string;
    detail: string;
    retry_after: number | null;
    fields: string[];
    clause: string | null;
  };
}

export interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage["headers"];
  body: string;
}

export type Route = (request: Recorded) => { status: number; headers?: Record<string, string>; body?: unknown } | Promise<{ status: number; headers?: Record<string, string>; body?: unknown }>;

/** A stand-in broker on 127.0.0.1: `route` answers every request; `requests` records them. */
export async function fakeBroker(route: Route): Promise<{ url: string; requests: Recorded[]; close: () => Promise<void> }> {
  const requests: Recorded[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://127.0.0.1");
      const recorded: Recorded = {
        method: req.method ?? "GET",
        path: url.pathname,
        query: url.searchParams,
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      };
      requests.push(recorded);
      Promise.resolve(route(recorded)).then(
        (answer) => {
          const body = answer.body === undefined ? "" : JSON.stringify(answer.body);
          res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
          res.end(body);
        },
        (e: unknown) => {
          res.writeHead(599);
          res.end(String(e));
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const TOKEN_ANSWER = { access_token: "at-1", token_type: "Bearer", expires_in: 300, scope: "inbox:read" };
