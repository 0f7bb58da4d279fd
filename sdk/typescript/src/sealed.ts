/**
 * Opening sealed deliveries: the records of your agency topic, and the bodies of encrypted
 * webhooks. Each is a compact JWE (`ECDH-ES+A256KW` with `A256GCM`) encrypted to your party's
 * public key, whose plaintext is a compact JWS (`ES256`) signed with the broker's
 * delivery-signing key, whose payload is the CloudEvent with only your fields:
 *
 * ```text
 * JWE  alg ECDH-ES+A256KW  enc A256GCM  kid <your key>  typ isa-broker-delivery+jwe
 *      cty isa-broker-event+jws   isa_message_id isa_delivery_id isa_recipient isa_agreements
 * JWS  alg ES256  kid <broker's delivery-signing key>  typ isa-broker-event+jws
 *      cty application/cloudevents+json   the same four isa_* members
 *      payload: the CloudEvent
 * ```
 *
 * {@link openDelivery} makes every check of the broker's own reference helper
 * (`services/core/crypto/recipient.py`), in the same order:
 *
 * 1. before decrypting: a compact JWE of the broker's algorithms, with a `kid` and the four
 *    `isa_*` members; addressed to your party; bound to the message and delivery it arrived as
 *    (the record's `isa_message_id` / `isa_delivery_id` headers, the webhook's `webhook-id`)
 *    — else {@link MisroutedError};
 * 2. a private key of yours with its `kid` ({@link UnknownKeyError}), and it decrypts;
 * 3. the content is a JWS `ES256`, typed as a broker event, signed by a key the broker
 *    publishes, whose signature verifies, and whose signed `isa_*` binding equals the
 *    encryption header's (not re-encrypted by someone else) — else {@link NotSignedByBrokerError};
 * 4. the CloudEvent inside names the same message, recipient and delivery
 *    ({@link MisroutedError}).
 *
 * The cryptography is the `jose` library's; nothing here computes a cipher or a signature.
 */

import { readFile } from "node:fs/promises";
import {
  calculateJwkThumbprint,
  compactDecrypt,
  compactVerify,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
} from "jose";

import {
  BrokerKeysUnavailableError,
  ConfigurationError,
  DeliveryDecryptError,
  MisroutedError,
  NotSignedByBrokerError,
  UnknownKeyError,
} from "./errors.js";
import type { CloudEvent, FetchLike } from "./types.js";

export const ALG = "ECDH-ES+A256KW";
export const ENC = "A256GCM";
export const TYP = "isa-broker-delivery+jwe";
/** The signed event's media type: the JWE's `cty` and the JWS's `typ`. */
export const SIGNED_TYP = "isa-broker-event+jws";
export const CTY = "application/cloudevents+json";
export const SIG_ALG = "ES256";
/** The `content-type` of a sealed record or encrypted webhook body. */
export const CONTENT_TYPE = "application/jose";
/** Where the broker publishes its delivery-signing public keys, under its URL. */
export const BROKER_KEYS_PATH = "/.well-known/delivery-signing-keys.json";
export const CURVES = ["P-256", "P-384", "P-521"] as const;

const H_MESSAGE = "isa_message_id";
const H_DELIVERY = "isa_delivery_id";
const H_RECIPIENT = "isa_recipient";
const H_AGREEMENTS = "isa_agreements";
const BINDING_HEADERS = [H_MESSAGE, H_DELIVERY, H_RECIPIENT, H_AGREEMENTS] as const;

const KID = /^[A-Za-z0-9._:-]{1,64}$/;
const MAX_TOKEN_BYTES = 1_000_000;
const MAX_JWKS_BYTES = 64 * 1024;
const MAX_SIGNED_HEADER_BYTES = 2048;

/** What a sealed delivery is bound to (the protected headers' `isa_*` members). */
export interface Binding {
  messageId: string;
  deliveryId: string;
  recipient: string;
  /** `id@version` of the agreements that permitted it, comma-separated. */
  agreements: string;
}

/** An opened delivery. */
export interface Opened {
  binding: Binding;
  /** The id of your key it was encrypted to. */
  kid: string;
  /** The CloudEvent the broker signed. */
  event: CloudEvent;
  /** The CloudEvent's bytes, as signed. */
  plaintext: Uint8Array;
  /** The broker's delivery-signing key that signed it. */
  signedBy: string;
  /** The compact JWS: keep it to show later that the broker sent you this event. */
  signed: string;
}

export interface JsonWebKeySet {
  keys: JWK[];
}

// -- your own keys -----------------------------------------------------------------------------

/**
 * Your party's private decryption keys, by `kid`: every key you still hold, so that records
 * encrypted before a rotation still open.
 */
export class RecipientKeys {
  private readonly jwks = new Map<string, JWK>();
  private readonly imported = new Map<string, Promise<CryptoKey>>();

  /** `keys`: private JWKs (each with `kid` and `d`), or a JWK set of them. */
  constructor(keys: readonly JWK[] | JsonWebKeySet) {
    const list = Array.isArray(keys) ? keys : (keys as JsonWebKeySet).keys;
    if (!Array.isArray(list) || list.length === 0) {
      throw new ConfigurationError("give at least one private key");
    }
    for (const jwk of list) {
      if (!jwk || typeof jwk !== "object" || !jwk.d || typeof jwk.kid !== "string" || !jwk.kid) {
        throw new ConfigurationError("each key must be a private JWK (with d) and a kid");
      }
      if (jwk.kty !== "EC" || !CURVES.includes(jwk.crv as (typeof CURVES)[number])) {
        throw new ConfigurationError(`key ${jwk.kid}: an EC key on ${CURVES.join(", ")} is needed`);
      }
      this.jwks.set(jwk.kid, jwk);
    }
  }

  static of(keys: RecipientKeys | readonly JWK[] | JsonWebKeySet): RecipientKeys {
    return keys instanceof RecipientKeys ? keys : new RecipientKeys(keys);
  }

  /** Load a file holding one private JWK or a JWK set of them. */
  static async fromFile(path: string): Promise<RecipientKeys> {
    const value = JSON.parse(await readFile(path, "utf8")) as JWK | JsonWebKeySet;
    return new RecipientKeys("keys" in value ? (value as JsonWebKeySet) : [value as JWK]);
  }

  get kids(): string[] {
    return [...this.jwks.keys()];
  }

  has(kid: string): boolean {
    return this.jwks.has(kid);
  }

  /** The key named `kid`, or `undefined`. */
  async get(kid: string): Promise<CryptoKey | undefined> {
    const jwk = this.jwks.get(kid);
    if (!jwk) return undefined;
    let key = this.imported.get(kid);
    if (!key) {
      const { alg: _alg, use: _use, key_ops: _ops, ...bare } = jwk;
      key = importJWK(bare, ALG) as Promise<CryptoKey>;
      this.imported.set(kid, key);
    }
    return key;
  }
}

/** A new key pair for your party: keep `privateJwk` secret (file mode 0600, or a vault), and
 * register `publicJwk` with `POST /v1/encryption-keys` ({@link IsaBrokerClient.registerEncryptionKey}).
 * `kid` defaults to the key's RFC 7638 thumbprint. */
export async function generateEncryptionKey(
  options: { kid?: string; crv?: (typeof CURVES)[number] } = {},
): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const crv = options.crv ?? "P-256";
  const { privateKey, publicKey } = await generateKeyPair(ALG, { crv, extractable: true });
  const pub = await exportJWK(publicKey);
  const kid = options.kid ?? (await calculateJwkThumbprint(pub, "sha256"));
  if (!KID.test(kid)) throw new ConfigurationError("kid must be 1 to 64 of A-Z a-z 0-9 . _ : -");
  const extra = { kid, use: "enc", alg: ALG };
  return { privateJwk: { ...(await exportJWK(privateKey)), ...extra }, publicJwk: { ...pub, ...extra } };
}

/** RFC 7638 SHA-256 thumbprint of a key: compare it out of band. */
export async function thumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(jwk, "sha256");
}

// -- the broker's delivery-signing keys --------------------------------------------------------


export interface BrokerKeysOptions {
  /** Where to fetch the set again when a delivery names a key not held (the broker's
   * `/.well-known/delivery-signing-keys.json`). Without it the set never changes. */
  url?: string;
  /** Refetch at most once in this many seconds (default 300). */
  refreshSeconds?: number;
  /** Accept an `http:` URL: local development only. */
  allowHttp?: boolean;
  /** The fetch to use (default the global `fetch`). */
  fetch?: FetchLike;
  /** A monotonic clock in milliseconds (default `performance.now`). */
  clock?: () => number;
}

function signingKeys(jwks: unknown): Map<string, JWK> {
  const members = (jwks as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(members) || members.length === 0) {
    throw new ConfigurationError("a JWK set is a JSON object whose keys member is a non-empty array");
  }
  const found = new Map<string, JWK>();
  for (const jwk of members as unknown[]) {
    if (!jwk || typeof jwk !== "object" || Array.isArray(jwk)) {
      throw new ConfigurationError("each member of keys must be a JSON object");
    }
    const key = jwk as JWK;
    if (typeof key.kid !== "string" || !KID.test(key.kid)) {
      throw new ConfigurationError("each key needs a kid of 1 to 64 characters of A-Z a-z 0-9 . _ : -");
    }
    if ("d" in key) throw new ConfigurationError(`key ${key.kid} holds a private key (member d)`);
    if (key.kty !== "EC" || key.crv !== "P-256" || typeof key.x !== "string" || typeof key.y !== "string") {
      throw new ConfigurationError(`key ${key.kid} is not an EC P-256 key (${SIG_ALG})`);
    }
    found.set(key.kid, { kty: "EC", crv: "P-256", x: key.x, y: key.y, kid: key.kid });
  }
  return found;
}

function checkedUrl(url: string, allowHttp: boolean): string {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new ConfigurationError(`not a URL: ${url}`);
  }
  if (protocol !== "https:" && !(protocol === "http:" && allowHttp)) {
    throw new ConfigurationError(`the broker keys URL must be https (http only when allowed): ${url}`);
  }
  return url;
}

async function fetchJwks(fetcher: FetchLike, url: string): Promise<unknown> {
  // redirect: "error": a redirect could leave https
  const response = await fetcher(url, {
    redirect: "error",
    headers: { accept: "application/json" },
    signal: AbortSignal.timeout(10_000),
  });
  if (response.status !== 200) throw new Error(`${url} answered HTTP ${response.status}`);
  const body = await response.arrayBuffer();
  if (body.byteLength > MAX_JWKS_BYTES) throw new Error(`${url} answered more than ${MAX_JWKS_BYTES} bytes`);
  return JSON.parse(new TextDecoder().decode(body));
}

/**
 * The broker's delivery-signing public keys, that {@link openDelivery} checks signatures with.
 *
 * Pin them: save the set once, compare each key's thumbprint ({@link thumbprints}) with the
 * ones the broker's operators give you out of band, and load it with {@link fromFile}
 * (`thumbprints` makes the comparison part of loading). Given `url`, a delivery signed with a
 * key id not held makes it fetch the set again (https only unless `allowHttp`; no redirects),
 * at most once per `refreshSeconds`; the set fetched replaces the one held, so a key the broker
 * withdrew stops being accepted.
 */
export class BrokerKeys {
  readonly url: string | null;
  readonly refreshSeconds: number;
  private keys: Map<string, JWK>;
  private readonly imported = new Map<string, Promise<CryptoKey>>();
  private readonly fetcher: FetchLike;
  private readonly clock: () => number;
  private refreshed: number | null = null; // never: an unknown kid is looked for at once
  private inflight: Promise<void> | null = null;

  constructor(jwks: JsonWebKeySet | Readonly<Record<string, unknown>>, options: BrokerKeysOptions = {}) {
    this.keys = signingKeys(jwks);
    this.url = options.url !== undefined ? checkedUrl(options.url, options.allowHttp ?? false) : null;
    this.refreshSeconds = options.refreshSeconds ?? 300;
    this.fetcher = options.fetch ?? ((input, init) => fetch(input, init));
    this.clock = options.clock ?? (() => performance.now());
  }

  static of(keys: BrokerKeys | JsonWebKeySet): BrokerKeys {
    return keys instanceof BrokerKeys ? keys : new BrokerKeys(keys);
  }

  /** The set fetched from `url` now (the broker's `/.well-known/delivery-signing-keys.json`),
   * and refreshed from there. */
  static async fromUrl(url: string, options: Omit<BrokerKeysOptions, "url"> = {}): Promise<BrokerKeys> {
    const fetcher = options.fetch ?? ((input: string, init?: RequestInit) => fetch(input, init));
    const jwks = await fetchJwks(fetcher, checkedUrl(url, options.allowHttp ?? false));
    const keys = new BrokerKeys(jwks as JsonWebKeySet, { ...options, url, fetch: fetcher });
    keys.refreshed = keys.clock();
    return keys;
  }

  /** The set saved in `path`. With `thumbprints` (RFC 7638, as the operators give them), every
   * key in the file must have one of them. */
  static async fromFile(
    path: string,
    options: BrokerKeysOptions & { thumbprints?: readonly string[] } = {},
  ): Promise<BrokerKeys> {
    const { thumbprints: expected, ...rest } = options;
    const keys = new BrokerKeys(JSON.parse(await readFile(path, "utf8")) as JsonWebKeySet, rest);
    if (expected) {
      const allowed = new Set(expected);
      const found = await keys.thumbprints();
      const unknown = Object.keys(found).filter((kid) => !allowed.has(found[kid] ?? "")).sort();
      if (unknown.length) {
        throw new ConfigurationError(`${path}: keys ${unknown.join(", ")} have none of the thumbprints given`);
      }
    }
    return keys;
  }

  /** Each key's RFC 7638 SHA-256 thumbprint, by kid. */
  async thumbprints(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const [kid, jwk] of this.keys) out[kid] = await calculateJwkThumbprint(jwk, "sha256");
    return out;
  }

  /** The keys held, as a JWK set (to save them). */
  jwks(): JsonWebKeySet {
    return { keys: [...this.keys.values()].map((k) => ({ ...k })) };
  }

  /** Fetch the set from `url` now and hold it instead. */
  async refresh(): Promise<void> {
    if (this.url === null) throw new ConfigurationError("these broker keys have no URL to refresh from");
    this.refreshed = this.clock();
    this.inflight ??= (async () => {
      try {
        const fetched = signingKeys(await fetchJwks(this.fetcher, this.url!));
        this.keys = fetched;
        this.imported.clear();
      } finally {
        this.inflight = null;
      }
    })();
    return this.inflight;
  }

  /** The key named `kid`; an unknown one is looked for again at `url` when the last look was
   * `refreshSeconds` ago. Throws {@link BrokerKeysUnavailableError} when that look fails. */
  async get(kid: string): Promise<CryptoKey | undefined> {
    if (!this.keys.has(kid) && this.url !== null) {
      const last = this.refreshed;
      if (last === null || this.clock() - last >= this.refreshSeconds * 1000) {
        try {
          await this.refresh();
        } catch (e) {
          throw new BrokerKeysUnavailableError(
            `signed with key ${JSON.stringify(kid)}, not among the broker keys held; fetching them again from ${this.url} failed: ${String(e)}`,
            { cause: e },
          );
        }
      }
    }
    const jwk = this.keys.get(kid);
    if (!jwk) return undefined;
    let key = this.imported.get(kid);
    if (!key) {
      key = importJWK(jwk, SIG_ALG) as Promise<CryptoKey>;
      this.imported.set(kid, key);
    }
    return key;
  }
}

// -- opening ------------------------------------------------------------------------------------

export interface OpenOptions {
  /** Your private keys: every one you still hold. */
  privateKeys: RecipientKeys | readonly JWK[] | JsonWebKeySet;
  /** The broker's delivery-signing keys. */
  brokerKeys: BrokerKeys | JsonWebKeySet;
  /** Your own party id: a delivery encrypted to another party is refused. */
  recipient: string;
}

export interface OpenContext {
  /** The message id the transport carried (Kafka header `isa_message_id`). */
  messageId?: string | null | undefined;
  /** The delivery id the transport carried (Kafka header `isa_delivery_id`, `webhook-id`). */
  deliveryId?: string | null | undefined;
}

function segmentJson(segment: string, what: string, error: typeof DeliveryDecryptError): Record<string, unknown> {
  let value: unknown;
  try {
    if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw new Error("not base64url");
    value = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch (e) {
    throw new error(`${what} is not base64url JSON: ${String(e)}`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw new error(`${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function asText(token: string | Uint8Array): string {
  if (typeof token === "string") return token;
  if (token.byteLength > MAX_TOKEN_BYTES) {
    throw new DeliveryDecryptError(`token is larger than ${MAX_TOKEN_BYTES} bytes`);
  }
  return new TextDecoder("utf-8", { fatal: false }).decode(token);
}

/** The protected header of a compact JWE, read without decrypting (not yet authentic:
 * {@link openDelivery} authenticates it). */
export function protectedHeader(token: string | Uint8Array): Record<string, unknown> {
  const text = asText(token).trim();
  if (Buffer.byteLength(text) > MAX_TOKEN_BYTES) {
    throw new DeliveryDecryptError(`token is larger than ${MAX_TOKEN_BYTES} bytes`);
  }
  const parts = text.split(".");
  if (parts.length !== 5) throw new DeliveryDecryptError("not a compact JWE (five dot-separated parts)");
  return segmentJson(parts[0]!, "protected header", DeliveryDecryptError);
}

function bindingOf(header: Record<string, unknown>): Binding {
  return {
    messageId: header[H_MESSAGE] as string,
    deliveryId: header[H_DELIVERY] as string,
    recipient: header[H_RECIPIENT] as string,
    agreements: header[H_AGREEMENTS] as string,
  };
}

/**
 * Check that `signed` is a compact JWS of a CloudEvent signed by one of the broker's
 * delivery-signing keys: returns the signed binding, the CloudEvent bytes and the kid. Throws
 * {@link NotSignedByBrokerError} naming why not ({@link BrokerKeysUnavailableError} when the
 * kid is unknown and the keys could not be fetched again).
 */
export async function verifySigned(
  signed: string,
  brokerKeys: BrokerKeys | JsonWebKeySet,
): Promise<{ binding: Binding; payload: Uint8Array; kid: string }> {
  const parts = signed.split(".");
  if (parts.length !== 3 || signed.startsWith("{") || signed.startsWith("[")) {
    throw new NotSignedByBrokerError(
      "the decrypted content is not a JWS (three dot-separated parts): an unsigned event, which the broker never sends",
    );
  }
  if (parts[0]!.length > (MAX_SIGNED_HEADER_BYTES * 4) / 3 + 4) {
    throw new NotSignedByBrokerError("the signed header is too large");
  }
  const header = segmentJson(parts[0]!, "the signed header", NotSignedByBrokerError);
  if (header["alg"] !== SIG_ALG) {
    throw new NotSignedByBrokerError(`signed with alg ${JSON.stringify(header["alg"])}; the broker signs ${SIG_ALG}`);
  }
  if (header["typ"] !== SIGNED_TYP || header["cty"] !== CTY) {
    throw new NotSignedByBrokerError(
      `signed content of typ ${JSON.stringify(header["typ"])} cty ${JSON.stringify(header["cty"])}, not a broker event (${SIGNED_TYP}, ${CTY})`,
    );
  }
  const kid = header["kid"];
  if (typeof kid !== "string") throw new NotSignedByBrokerError("the signed header names no kid");
  const key = await BrokerKeys.of(brokerKeys).get(kid);
  if (!key) {
    throw new NotSignedByBrokerError(`signed with key ${JSON.stringify(kid)}, which is not among the broker's delivery-signing keys`);
  }
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(signed, key, { algorithms: [SIG_ALG] }));
  } catch (e) {
    throw new NotSignedByBrokerError(`the signature does not verify with the broker's key ${JSON.stringify(kid)}: ${String(e)}`, {
      cause: e,
    });
  }
  const missing = BINDING_HEADERS.filter((h) => typeof header[h] !== "string");
  if (missing.length) throw new NotSignedByBrokerError(`the signed header lacks ${missing.join(", ")}`);
  return { binding: bindingOf(header), payload, kid };
}

/**
 * Decrypt a sealed delivery addressed to `options.recipient` (your own party id) and check
 * that the broker signed it for this delivery (see the module's documentation for every
 * check). Give `context.messageId` / `context.deliveryId` whenever the transport carried them:
 * a token bound to other ids is refused.
 *
 * Throws a {@link DeliveryDecryptError}: {@link MisroutedError}, {@link UnknownKeyError},
 * {@link NotSignedByBrokerError}, {@link BrokerKeysUnavailableError}, or the base class when it
 * is malformed or does not decrypt.
 */
export async function openDelivery(
  token: string | Uint8Array,
  options: OpenOptions,
  context: OpenContext = {},
): Promise<Opened> {
  const text = asText(token).trim();
  const header = protectedHeader(text);
  if (header["alg"] !== ALG || header["enc"] !== ENC) {
    throw new DeliveryDecryptError(
      `unexpected algorithms alg=${JSON.stringify(header["alg"])} enc=${JSON.stringify(header["enc"])}; deliveries use ${ALG} with ${ENC}`,
    );
  }
  const missing = BINDING_HEADERS.filter((h) => !(h in header));
  if (missing.length || typeof header["kid"] !== "string") {
    throw new DeliveryDecryptError(`protected header lacks ${(missing.length ? missing : ["kid"]).join(", ")}`);
  }
  const wrongType = BINDING_HEADERS.filter((h) => typeof header[h] !== "string");
  if (wrongType.length) throw new DeliveryDecryptError(`protected header members ${wrongType.join(", ")} are not strings`);
  const binding = bindingOf(header);
  if (binding.recipient !== options.recipient) {
    throw new MisroutedError(`encrypted to ${JSON.stringify(binding.recipient)}, not to ${JSON.stringify(options.recipient)}`);
  }
  if (context.messageId != null && binding.messageId !== context.messageId) {
    throw new MisroutedError(`bound to message ${binding.messageId}, arrived as ${context.messageId}`);
  }
  if (context.deliveryId != null && binding.deliveryId !== context.deliveryId) {
    throw new MisroutedError(`bound to delivery ${binding.deliveryId}, arrived as ${context.deliveryId}`);
  }
  const kid = header["kid"] as string;
  const key = await RecipientKeys.of(options.privateKeys).get(kid);
  if (!key) throw new UnknownKeyError(`encrypted to key ${JSON.stringify(kid)}, which is not among the keys given`);
  let plaintext: Uint8Array;
  try {
    ({ plaintext } = await compactDecrypt(text, key, {
      keyManagementAlgorithms: [ALG],
      contentEncryptionAlgorithms: [ENC],
      maxDecompressedLength: 0, // the broker never compresses
    }));
  } catch (e) {
    throw new DeliveryDecryptError(`does not decrypt with key ${JSON.stringify(kid)}: ${String(e)}`, { cause: e });
  }
  if (plaintext.byteLength === 0) throw new DeliveryDecryptError("empty plaintext");
  // decrypted, so the encryption header is authentic: now, who wrote the content
  const signed = new TextDecoder().decode(plaintext);
  const verified = await verifySigned(signed, options.brokerKeys);
  if (header["cty"] !== SIGNED_TYP) {
    throw new NotSignedByBrokerError(`the encryption header's cty is ${JSON.stringify(header["cty"])}`);
  }
  const names = { messageId: "message", deliveryId: "delivery", recipient: "recipient", agreements: "agreements" } as const;
  for (const field of Object.keys(names) as (keyof Binding)[]) {
    if (binding[field] !== verified.binding[field]) {
      throw new NotSignedByBrokerError(
        `the broker signed it for ${names[field]} ${JSON.stringify(verified.binding[field])}, the encryption header says ${JSON.stringify(binding[field])}: encrypted again by someone else`,
      );
    }
  }
  let event: unknown;
  try {
    event = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(verified.payload));
  } catch (e) {
    throw new DeliveryDecryptError(`the signed content is not JSON: ${String(e)}`, { cause: e });
  }
  if (!event || typeof event !== "object" || Array.isArray(event) || (event as CloudEvent).id !== binding.messageId) {
    throw new MisroutedError("the CloudEvent inside does not carry the message id of the header");
  }
  const ce = event as CloudEvent;
  if ("isarecipient" in ce && ce.isarecipient !== options.recipient) {
    throw new MisroutedError("the CloudEvent inside is addressed to another recipient");
  }
  if ("isadeliveryid" in ce && ce.isadeliveryid !== binding.deliveryId) {
    throw new MisroutedError("the CloudEvent inside names another delivery than the header");
  }
  return { binding, kid, event: ce, plaintext: verified.payload, signedBy: verified.kid, signed };
}

/** Kafka record headers as kafkajs (`IHeaders`) or other clients give them. */
export type RecordHeaders =
  | Readonly<Record<string, string | Uint8Array | readonly (string | Uint8Array)[] | undefined>>
  | Iterable<readonly [string, string | Uint8Array]>;

function headerText(value: string | Uint8Array | readonly (string | Uint8Array)[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  const first = (value as readonly (string | Uint8Array)[])[0];
  return first === undefined ? undefined : headerText(first);
}

/** Record header `name`, decoded as text. */
export function recordHeader(headers: RecordHeaders | undefined, name: string): string | undefined {
  if (!headers) return undefined;
  if (Symbol.iterator in headers) {
    for (const [key, value] of headers as Iterable<readonly [string, string | Uint8Array]>) {
      if (key === name) return headerText(value);
    }
    return undefined;
  }
  return headerText((headers as Readonly<Record<string, string | Uint8Array | undefined>>)[name]);
}

/** Decrypt a record consumed from your agency topic, checking it against the ids in its
 * headers (`isa_message_id`, `isa_delivery_id`) and its signature against the broker's keys.
 * A record without a value (a tombstone) is malformed. */
export async function openRecord(
  value: string | Uint8Array | null | undefined,
  headers: RecordHeaders | undefined,
  options: OpenOptions,
): Promise<Opened> {
  if (value == null) throw new DeliveryDecryptError("the record has no value");
  return openDelivery(value, options, {
    messageId: recordHeader(headers, "isa_message_id") ?? null,
    deliveryId: recordHeader(headers, "isa_delivery_id") ?? null,
  });
}
