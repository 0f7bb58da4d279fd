/**
 * Verifying the broker's webhook requests (Standard Webhooks 1.0,
 * https://www.standardwebhooks.com/). Both schemes sign `{webhook-id}.{webhook-timestamp}.{body}`:
 *
 * - `v1`: HMAC-SHA256 keyed with the base64 after `whsec_`. The MAC is computed by the
 *   specification's own library, the `standardwebhooks` npm package (`Webhook.sign`).
 * - `v1a`: ed25519, verified with the 32-byte public key whose base64 follows `whpk_`. The
 *   `standardwebhooks` package has no asymmetric scheme, so this is Node's own ed25519
 *   (`node:crypto`), not code of ours.
 *
 * `Webhook.verify` of the library is not used: it reads the wall clock with a fixed
 * five-minute tolerance, and takes one secret. Here the timestamp check takes an injectable
 * clock and tolerance, and a request is accepted when any signature in its header verifies
 * with any key held (a rotation's overlap: the broker signs with the new key and the previous
 * one, and you may hold either, or both).
 */

import { createPublicKey, timingSafeEqual, verify as verifySignature, type KeyObject } from "node:crypto";
import { Webhook } from "standardwebhooks";

import { ConfigurationError, WebhookVerificationError } from "./errors.js";

export const SECRET_PREFIX = "whsec_";
export const PUBLIC_KEY_PREFIX = "whpk_";
const SECRET_KEY_PREFIX = "whsk_";
/** Seconds accepted between `webhook-timestamp` and your clock (the broker's guidance). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** Request headers as Node's `IncomingMessage.headers`, a fetch `Headers`, or a plain object
 * (names in any case). */
export type HeadersLike =
  | Headers
  | Readonly<Record<string, string | readonly string[] | undefined>>
  | Iterable<readonly [string, string]>;

export interface WebhookVerifierOptions {
  /** Seconds between `webhook-timestamp` and `clock` accepted either way (default 300). */
  toleranceSeconds?: number;
  /** The time now in milliseconds since the epoch (default `Date.now`): inject it in tests. */
  clock?: () => number;
}

/** A request that verified. */
export interface VerifiedWebhook {
  /** `webhook-id`: the delivery id. The same on every retry and replay: de-duplicate on it. */
  id: string;
  /** `webhook-timestamp`, Unix seconds. */
  timestamp: number;
  /** Which scheme verified. */
  scheme: "v1" | "v1a";
  /** The raw body, as verified. */
  body: Uint8Array;
}

type Verifier =
  | { scheme: "v1"; webhook: Webhook }
  | { scheme: "v1a"; key: KeyObject };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function strictBase64(text: string, what: string, size?: number): Buffer {
  if (!BASE64.test(text)) throw new ConfigurationError(`${what} is not valid base64`);
  const raw = Buffer.from(text, "base64");
  if (raw.length === 0 || (size !== undefined && raw.length !== size)) {
    throw new ConfigurationError(`${what} must decode to ${size ?? "at least 1"} bytes`);
  }
  return raw;
}

function verifierOf(key: string): Verifier {
  if (typeof key !== "string") throw new ConfigurationError("a webhook key must be a string");
  if (key.startsWith(SECRET_KEY_PREFIX)) {
    throw new ConfigurationError("verify v1a signatures with the whpk_ public key, not a whsk_ key");
  }
  if (key.startsWith(PUBLIC_KEY_PREFIX)) {
    const raw = strictBase64(key.slice(PUBLIC_KEY_PREFIX.length), "whpk_ key", 32);
    const x = raw.toString("base64url");
    return { scheme: "v1a", key: createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" }) };
  }
  // A whsec_ secret (or the bare base64 some libraries accept). Checked strictly here and given
  // to the library as bytes: given a string it would decode leniently.
  const secret = key.startsWith(SECRET_PREFIX) ? key.slice(SECRET_PREFIX.length) : key;
  return { scheme: "v1", webhook: new Webhook(strictBase64(secret, "webhook secret"), { format: "raw" }) };
}

/** The value of header `name` (lower case), whatever the shape of `headers`. */
export function headerValue(headers: HeadersLike, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function" && typeof (headers as Headers).has === "function") {
    return (headers as Headers).get(name) ?? undefined;
  }
  if (Symbol.iterator in headers && typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    const values: string[] = [];
    for (const [key, value] of headers as Iterable<readonly [string, string]>) {
      if (key.toLowerCase() === name) values.push(value);
    }
    return values.length ? values.join(", ") : undefined;
  }
  const record = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() !== name) continue;
    const value = record[key];
    if (value === undefined) return undefined;
    return typeof value === "string" ? value : value.join(", ");
  }
  return undefined;
}

function bytesOf(body: string | Uint8Array): Uint8Array {
  return typeof body === "string" ? new TextEncoder().encode(body) : body;
}

/**
 * Verifies webhook requests with every key you hold for a subscription: its `whsec_` secret
 * (scheme `v1`) or its `whpk_` public key (scheme `v1a`); during a rotation, the new key and
 * the previous one.
 *
 * ```ts
 * const verifier = new WebhookVerifier([process.env.ISA_WEBHOOK_SECRET!]);
 * const { id } = verifier.verify(rawBody, req.headers); // throws WebhookVerificationError
 * ```
 */
export class WebhookVerifier {
  readonly toleranceSeconds: number;
  private readonly clock: () => number;
  private readonly verifiers: readonly Verifier[];

  constructor(keys: string | readonly string[], options: WebhookVerifierOptions = {}) {
    const list = typeof keys === "string" ? [keys] : [...keys];
    if (list.length === 0) throw new ConfigurationError("give at least one webhook key");
    this.verifiers = list.map(verifierOf);
    this.toleranceSeconds = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
    if (!Number.isFinite(this.toleranceSeconds) || this.toleranceSeconds < 0) {
      throw new ConfigurationError("toleranceSeconds must be a number of seconds, 0 or more");
    }
    this.clock = options.clock ?? Date.now;
  }

  /**
   * Check a request: its `webhook-timestamp` within the tolerance of the clock, then one of
   * its signatures valid under one of the keys. Give the **raw** body, before any JSON
   * parsing. Throws {@link WebhookVerificationError} (`kind` `timestamp` or `signature`).
   */
  verify(body: string | Uint8Array, headers: HeadersLike): VerifiedWebhook {
    const id = headerValue(headers, "webhook-id") ?? "";
    const stamp = (headerValue(headers, "webhook-timestamp") ?? "").trim();
    const signatures = headerValue(headers, "webhook-signature") ?? "";
    if (!/^\d{1,15}$/.test(stamp)) {
      throw new WebhookVerificationError("timestamp", "webhook-timestamp is missing or not Unix seconds");
    }
    const timestamp = Number(stamp);
    const now = Math.floor(this.clock() / 1000);
    if (Math.abs(now - timestamp) > this.toleranceSeconds) {
      throw new WebhookVerificationError("timestamp", "webhook timestamp outside tolerance");
    }
    if (!id) throw new WebhookVerificationError("signature", "webhook-id is missing");
    const raw = bytesOf(body);
    const candidates = signatures.split(" ").filter(Boolean);
    for (const verifier of this.verifiers) {
      if (matches(verifier, id, timestamp, raw, candidates)) {
        return { id, timestamp, scheme: verifier.scheme, body: raw };
      }
    }
    throw new WebhookVerificationError("signature", "no webhook signature matched");
  }
}

function matches(
  verifier: Verifier,
  id: string,
  timestamp: number,
  body: Uint8Array,
  candidates: readonly string[],
): boolean {
  if (verifier.scheme === "v1") {
    const expected = Buffer.from(verifier.webhook.sign(id, new Date(timestamp * 1000), body));
    let found = false;
    for (const candidate of candidates) {
      const given = Buffer.from(candidate);
      // constant time, as the library's own verify compares
      if (given.length === expected.length && timingSafeEqual(given, expected)) found = true;
    }
    return found;
  }
  const content = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  for (const candidate of candidates) {
    const comma = candidate.indexOf(",");
    if (comma < 0 || candidate.slice(0, comma) !== "v1a") continue;
    const encoded = candidate.slice(comma + 1);
    if (!BASE64.test(encoded)) continue;
    const signature = Buffer.from(encoded, "base64");
    if (signature.length !== 64) continue;
    try {
      if (verifySignature(null, content, verifier.key, signature)) return true;
    } catch {
      // not a signature this key can check: try the next one
    }
  }
  return false;
}
