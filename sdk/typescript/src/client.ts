/**
 * The broker's HTTP API for an agency: publishing, subscriptions, encryption keys,
 * deliveries, dead letters and replay, duties, and the inbox.
 */

import { randomUUID } from "node:crypto";

import {
  ConfigurationError,
  IsaBrokerError,
  ProblemError,
  problemError,
  TransportError,
  UnauthenticatedError,
  type Problem,
} from "./errors.js";
import { BROKER_KEYS_PATH, BrokerKeys, type BrokerKeysOptions, type JsonWebKeySet } from "./sealed.js";
import { TokenSource, type ClientCredentials } from "./tokens.js";
import type {
  AcceptedMessage,
  Channel,
  Delivery,
  DeliveryStatus,
  Duty,
  EncryptionKey,
  FetchLike,
  InboxEntry,
  InboxPage,
  KafkaCredential,
  MessageType,
  SignatureScheme,
  Subscription,
} from "./types.js";
import { InboxStream, type InboxOptions } from "./inbox.js";

export interface IsaBrokerClientOptions {
  /** The broker's URL, e.g. `https://isa-broker.example`. */
  baseUrl: string;
  /** The client the operator registered for your party. */
  credentials: ClientCredentials;
  /** Ask for a subset of the client's scopes (space-separated; default all). */
  scope?: string;
  /** Default `<baseUrl>/oauth/token`. */
  tokenEndpoint?: string;
  /** `private_key_jwt`: the assertion's `aud` (default the token endpoint). */
  audience?: string;
  /** Milliseconds per request (default 30 000; a long poll gets its `wait` on top). */
  timeoutMs?: number;
  /**
   * Retries of a request that is safe to repeat (a read, an acknowledgement, a publish with
   * its `Idempotency-Key`) after a `429`, a `502`/`503`/`504` or no answer (default 2). The
   * wait is the answer's `Retry-After`, else 0.5 s, 1 s, 2 s ...
   */
  maxRetries?: number;
  /** Never wait longer than this for a retry, in seconds (default 30): a longer
   * `Retry-After` is thrown to you as the error. */
  maxRetryDelaySeconds?: number;
  fetch?: FetchLike;
  /** Milliseconds since the epoch (default `Date.now`). */
  clock?: () => number;
  /** `User-Agent` sent with each request. */
  userAgent?: string;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | readonly (string | number)[] | null | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Safe to send again (see `maxRetries`). Default: true for GET. */
  retry?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ApiResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

export interface PublishOptions {
  /** Purposes of the share (`resettlement`, `victim-safety` ...); default: every purpose an
   * agreement in force lets your party use. */
  purposes?: readonly string[];
  /** Keep it with the event and send the same key when you repeat the request; default a new
   * UUID (reused by this call's own retries). */
  idempotencyKey?: string;
}

export interface PublishResult {
  /** The `202` answer. */
  message: AcceptedMessage;
  /** The `Idempotency-Key` sent. */
  idempotencyKey: string;
  /** `true` when the broker answered with the original `202` of this key
   * (`Idempotent-Replayed: true`): nothing new was stored. */
  replayed: boolean;
}

export interface CreateSubscriptionRequest {
  message_types: readonly MessageType[];
  channel?: Channel;
  webhook?: { url: string };
  signature_scheme?: SignatureScheme;
  /** Webhook only: bodies as a compact JWE encrypted to your registered key. */
  encrypt?: boolean;
  filters?: Record<string, unknown> | null;
}

export interface DeliveryFilters {
  status?: DeliveryStatus;
  subscriptionId?: string;
  messageId?: string;
  /** RFC 3339 with an offset, or a Date. */
  since?: string | Date;
  until?: string | Date;
  limit?: number;
}

export interface DeadLetterFilters {
  subscriptionId?: string;
  since?: string | Date;
  until?: string | Date;
  limit?: number;
}

export interface DutyFilters {
  role?: "recipient" | "sender" | "escalation";
  /** `open`, `acknowledged`, `escalated`, `cleared`, `overdue` ... */
  status?: string;
  messageId?: string;
  limit?: number;
  offset?: number;
}

export interface DutyPage {
  duties: Duty[];
  /** Pass as `offset` for the next page; `null`: none. */
  next_offset: number | null;
}

const RETRY_STATUSES = new Set([429, 502, 503, 504]);

function iso(value: string | Date | undefined): string | undefined {
  return value instanceof Date ? value.toISOString() : value;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * An agency's client of the broker.
 *
 * ```ts
 * const broker = new IsaBrokerClient({
 *   baseUrl: "https://isa-broker.example",
 *   credentials: { clientId: process.env.ISA_CLIENT_ID!, clientSecret: process.env.ISA_CLIENT_SECRET! },
 * });
 * for await (const entry of broker.inbox()) { ... }
 * ```
 */
export class IsaBrokerClient {
  readonly baseUrl: string;
  readonly tokens: TokenSource;
  private readonly options: IsaBrokerClientOptions;
  private readonly fetcher: FetchLike;

  constructor(options: IsaBrokerClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new ConfigurationError(`baseUrl is not a URL: ${options.baseUrl}`);
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new ConfigurationError("baseUrl must be an http(s) URL");
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.options = options;
    this.fetcher = options.fetch ?? ((input, init) => fetch(input, init));
    this.tokens = new TokenSource({
      tokenEndpoint: options.tokenEndpoint ?? `${this.baseUrl}/oauth/token`,
      credentials: options.credentials,
      fetch: this.fetcher,
      ...(options.scope !== undefined && { scope: options.scope }),
      ...(options.audience !== undefined && { audience: options.audience }),
      ...(options.clock !== undefined && { clock: options.clock }),
      ...(options.timeoutMs !== undefined && { timeoutMs: options.timeoutMs }),
    });
  }

  // -- the request ----------------------------------------------------------------------------

  /**
   * One call of the API, with a bearer token (fetched again once after a `401`), retries where
   * safe, and every problem answer thrown as a {@link ProblemError}. For routes this class does
   * not wrap.
   */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<ApiResponse<T>> {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value === undefined || value === null) continue;
      for (const item of Array.isArray(value) ? value : [value]) url.searchParams.append(name, String(item));
    }
    const retry = options.retry ?? method === "GET";
    const maxRetries = retry ? (this.options.maxRetries ?? 2) : 0;
    const headers: Record<string, string> = { accept: "application/json", ...options.headers };
    if (this.options.userAgent) headers["user-agent"] = this.options.userAgent;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const token = await this.tokens.token();
      let response: Response;
      try {
        const timeout = AbortSignal.timeout(options.timeoutMs ?? this.options.timeoutMs ?? 30_000);
        response = await this.fetcher(url.toString(), {
          method,
          headers: { ...headers, authorization: `Bearer ${token}` },
          ...(body !== undefined && { body }),
          redirect: "error",
          signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
        });
      } catch (e) {
        if (options.signal?.aborted) throw e;
        const error = new TransportError(`${method} ${path}: no answer: ${String(e)}`, null, { cause: e });
        if (attempt < maxRetries) {
          await sleep(this.backoff(attempt, null), options.signal);
          continue;
        }
        throw error;
      }
      const text = await response.text();
      if (response.ok) {
        let parsed: unknown = undefined;
        if (text) {
          try {
            parsed = JSON.parse(text);
          } catch (e) {
            throw new TransportError(`${method} ${path}: answered ${response.status} with a body that is not JSON`, response.status, { cause: e });
          }
        }
        return { status: response.status, headers: response.headers, body: parsed as T };
      }
      const error = this.errorOf(method, path, response, text);
      if (error instanceof UnauthenticatedError && !refreshed) {
        refreshed = true; // expired or revoked: one new token, then the same request again
        this.tokens.invalidate(token);
        attempt--;
        continue;
      }
      if (attempt < maxRetries && RETRY_STATUSES.has(response.status)) {
        const wait = this.backoff(attempt, error instanceof ProblemError ? error.retryAfter : null);
        if (wait <= (this.options.maxRetryDelaySeconds ?? 30) * 1000) {
          await sleep(wait, options.signal);
          continue;
        }
      }
      throw error;
    }
  }

  private backoff(attempt: number, retryAfter: number | null): number {
    return retryAfter !== null ? retryAfter * 1000 : 500 * 2 ** attempt;
  }

  private errorOf(method: string, path: string, response: Response, text: string): IsaBrokerError {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (body && typeof body === "object" && !Array.isArray(body)) {
      return problemError(response.status, body as Problem, response.headers.get("retry-after"));
    }
    if (RETRY_STATUSES.has(response.status) || response.status === 401) {
      return problemError(response.status, { status: response.status, title: response.statusText }, response.headers.get("retry-after"));
    }
    return new TransportError(`${method} ${path}: answered ${response.status} without a problem document`, response.status);
  }

  private async call<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    return (await this.request<T>(method, path, options)).body;
  }

  // -- publishing (senders) -------------------------------------------------------------------

  /**
   * Publish a message of `type`. Repeat a request that failed with a `429`, a `5xx` or no
   * answer with the same `idempotencyKey`: the broker then stores it once.
   */
  async publish(type: MessageType, body: unknown, options: PublishOptions = {}): Promise<PublishResult> {
    return this.accepted(`/v1/messages/${encodeURIComponent(type)}`, body, options);
  }

  /** Amend a release notice you sent (a complete release notice: the new state). */
  async amend(messageId: string, body: unknown, options: Omit<PublishOptions, "purposes"> = {}): Promise<PublishResult> {
    return this.accepted(`/v1/messages/${encodeURIComponent(messageId)}/amend`, body, options);
  }

  /** Cancel a release notice you sent, with a reason code (`issued_in_error` ...). */
  async cancel(messageId: string, reason: string, options: Omit<PublishOptions, "purposes"> = {}): Promise<PublishResult> {
    return this.accepted(`/v1/messages/${encodeURIComponent(messageId)}/cancel`, { reason }, options);
  }

  /** Confirm the release of a release notice you sent. */
  async confirmRelease(
    messageId: string,
    releasedAt: string | Date,
    options: Omit<PublishOptions, "purposes"> = {},
  ): Promise<PublishResult> {
    return this.accepted(`/v1/messages/${encodeURIComponent(messageId)}/confirm-release`, { released_at: iso(releasedAt) }, options);
  }

  /** Record the outcome of a DIP breach you sent. */
  async recordOutcome(
    messageId: string,
    outcome: string,
    date: string,
    options: Omit<PublishOptions, "purposes"> = {},
  ): Promise<PublishResult> {
    return this.accepted(`/v1/messages/${encodeURIComponent(messageId)}/outcome`, { outcome, date }, options);
  }

  private async accepted(path: string, body: unknown, options: PublishOptions): Promise<PublishResult> {
    const idempotencyKey = options.idempotencyKey ?? randomUUID();
    if (idempotencyKey.length < 1 || idempotencyKey.length > 200) {
      throw new ConfigurationError("idempotencyKey must be 1 to 200 characters");
    }
    const response = await this.request<AcceptedMessage>("POST", path, {
      body,
      headers: { "idempotency-key": idempotencyKey },
      query: { purpose: options.purposes },
      retry: true, // the key makes a repeat safe
    });
    return {
      message: response.body,
      idempotencyKey,
      replayed: response.headers.get("idempotent-replayed") === "true",
    };
  }

  /** The state and history of a message you sent, or your projections of one you received. */
  async getMessage(messageId: string): Promise<Record<string, unknown>> {
    return this.call("GET", `/v1/messages/${encodeURIComponent(messageId)}`);
  }

  /** The decision behind a message you sent, field by field. */
  async getDecision(messageId: string): Promise<Record<string, unknown>> {
    return this.call("GET", `/v1/decisions/${encodeURIComponent(messageId)}`);
  }

  // -- subscriptions --------------------------------------------------------------------------

  /** Subscribe. Keep the answer's `secret` (v1 webhooks) and `kafka_credential` (first Kafka
   * subscription): they are shown once. */
  async createSubscription(request: CreateSubscriptionRequest): Promise<Subscription> {
    return this.call("POST", "/v1/subscriptions", { body: request });
  }

  async listSubscriptions(): Promise<Subscription[]> {
    return this.call("GET", "/v1/subscriptions");
  }

  /** Set (or, with `null`, remove) a subscription's filters. */
  async setSubscriptionFilters(id: string, filters: Record<string, unknown> | null): Promise<Subscription> {
    return this.call("PATCH", `/v1/subscriptions/${encodeURIComponent(id)}`, { body: { filters } });
  }

  /** Re-enable a disabled subscription (then replay its dead letters). */
  async enableSubscription(id: string): Promise<Subscription> {
    return this.call("POST", `/v1/subscriptions/${encodeURIComponent(id)}/enable`, { retry: true });
  }

  /** A new signing key for a webhook subscription; the previous one keeps signing for
   * `overlapSeconds` (default the broker's, 24 h). */
  async rotateSecret(id: string, overlapSeconds?: number): Promise<Subscription> {
    return this.call("POST", `/v1/subscriptions/${encodeURIComponent(id)}/rotate-secret`, {
      body: overlapSeconds === undefined ? {} : { overlap_seconds: overlapSeconds },
    });
  }

  async deleteSubscription(id: string): Promise<void> {
    await this.call("DELETE", `/v1/subscriptions/${encodeURIComponent(id)}`);
  }

  /** A new password for your party's Kafka user (the previous one stops working). */
  async issueKafkaCredential(): Promise<KafkaCredential> {
    return this.call("POST", "/v1/kafka-credential");
  }

  // -- encryption keys ------------------------------------------------------------------------

  /** Register a public key (EC P-256/384/521): deliveries are encrypted to it from now on. */
  async registerEncryptionKey(publicJwk: Record<string, unknown>): Promise<EncryptionKey> {
    if ("d" in publicJwk) throw new ConfigurationError("register the public key only (this JWK has d)");
    return this.call("POST", "/v1/encryption-keys", { body: { jwk: publicJwk } });
  }

  async listEncryptionKeys(): Promise<EncryptionKey[]> {
    return this.call("GET", "/v1/encryption-keys");
  }

  /** Retire a key: nothing new is encrypted to it. Keep its private half until every record
   * encrypted to it is consumed. */
  async retireEncryptionKey(kid: string): Promise<EncryptionKey> {
    return this.call("DELETE", `/v1/encryption-keys/${encodeURIComponent(kid)}`);
  }

  /**
   * The broker's delivery-signing keys, fetched now from `/.well-known/delivery-signing-keys.json`
   * and refreshed from there when a delivery names a key not held. Pin them in production
   * (`BrokerKeys.fromFile` with the thumbprints the operators give you).
   */
  async brokerKeys(options: Omit<BrokerKeysOptions, "url"> = {}): Promise<BrokerKeys> {
    const url = this.baseUrl + BROKER_KEYS_PATH;
    return BrokerKeys.fromUrl(url, {
      fetch: this.fetcher,
      allowHttp: url.startsWith("http:"),
      ...options,
    });
  }

  /** The delivery-signing JWK set as published now (to save and pin). */
  async brokerKeySet(): Promise<JsonWebKeySet> {
    return (await this.brokerKeys()).jwks();
  }

  // -- deliveries and dead letters ------------------------------------------------------------

  async listDeliveries(filters: DeliveryFilters = {}): Promise<Delivery[]> {
    return this.call("GET", "/v1/deliveries", {
      query: {
        status: filters.status,
        subscription_id: filters.subscriptionId,
        message_id: filters.messageId,
        since: iso(filters.since),
        until: iso(filters.until),
        limit: filters.limit,
      },
    });
  }

  /** One delivery with its attempt `history`. */
  async getDelivery(id: string): Promise<Delivery> {
    return this.call("GET", `/v1/deliveries/${encodeURIComponent(id)}`);
  }

  async listDeadLetters(filters: DeadLetterFilters = {}): Promise<Delivery[]> {
    return this.call("GET", "/v1/dead-letters", {
      query: {
        subscription_id: filters.subscriptionId,
        since: iso(filters.since),
        until: iso(filters.until),
        limit: filters.limit,
      },
    });
  }

  /** Queue one dead letter again (its subscription must be active). */
  async replayDeadLetter(id: string): Promise<{ replayed: string[] }> {
    return this.call("POST", `/v1/dead-letters/${encodeURIComponent(id)}/replay`);
  }

  /** Queue again the dead letters of a subscription, a time range, or both. */
  async replayDeadLetters(selection: Omit<DeadLetterFilters, "limit">): Promise<{ replayed: string[] }> {
    const body: Record<string, string> = {};
    if (selection.subscriptionId) body["subscription_id"] = selection.subscriptionId;
    if (selection.since) body["since"] = iso(selection.since)!;
    if (selection.until) body["until"] = iso(selection.until)!;
    if (Object.keys(body).length === 0) throw new ConfigurationError("name a subscriptionId, a time range, or both");
    return this.call("POST", "/v1/dead-letters/replay", { body });
  }

  // -- duties ---------------------------------------------------------------------------------

  async listDuties(filters: DutyFilters = {}): Promise<DutyPage> {
    return this.call("GET", "/v1/duties", {
      query: {
        role: filters.role,
        status: filters.status,
        message_id: filters.messageId,
        limit: filters.limit,
        offset: filters.offset,
      },
    });
  }

  async getDuty(id: string): Promise<Duty> {
    return this.call("GET", `/v1/duties/${encodeURIComponent(id)}`);
  }

  /** Acknowledge a duty, optionally with one of its `allowed_actions`. Safe to repeat: a
   * second acknowledgement answers the first. */
  async acknowledgeDuty(id: string, action?: string): Promise<Duty> {
    return this.call("POST", `/v1/duties/${encodeURIComponent(id)}/acknowledge`, {
      body: action === undefined ? {} : { action },
      retry: true,
    });
  }

  // -- the inbox ------------------------------------------------------------------------------

  /** One read of the inbox (`wait` seconds of long poll when it is empty). */
  async readInbox(options: { after?: number; limit?: number; wait?: number; signal?: AbortSignal } = {}): Promise<InboxPage> {
    const wait = options.wait ?? 0;
    return this.call("GET", "/v1/inbox", {
      query: { after: options.after, limit: options.limit, wait: wait || undefined },
      timeoutMs: (this.options.timeoutMs ?? 30_000) + wait * 1000,
      ...(options.signal !== undefined && { signal: options.signal }),
    });
  }

  /** Acknowledge every entry up to and including `cursor` (it never moves back). */
  async ackInbox(cursor: number | InboxEntry): Promise<{ previous: number; acknowledged: number }> {
    const value = typeof cursor === "number" ? cursor : cursor.cursor;
    return this.call("POST", "/v1/inbox/ack", { body: { cursor: value }, retry: true });
  }

  /**
   * The inbox as an async iterator, long-polling while it is empty:
   *
   * ```ts
   * for await (const entry of broker.inbox({ wait: 30 })) {
   *   await storeOnce(entry.delivery_id ?? entry.event.id, entry.event);
   * }
   * ```
   *
   * See {@link InboxOptions} for acknowledgement (`ack: "auto"` by default, at page
   * boundaries) and for stopping (`signal`, `untilEmpty`, or `break`).
   */
  inbox(options: InboxOptions = {}): InboxStream {
    return new InboxStream(this, options);
  }
}
