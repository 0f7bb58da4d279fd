/**
 * Access tokens from the broker's token endpoint (`POST /oauth/token`, OAuth 2.0 client
 * credentials grant), with a client secret (`client_secret_basic`) or a private key
 * (`private_key_jwt`, RFC 7523: a signed assertion, made by `jose`). A token is cached and
 * fetched again shortly before it expires; concurrent callers share one request.
 */

import { randomUUID } from "node:crypto";
import { importJWK, SignJWT, type CryptoKey, type JWK, type KeyObject } from "jose";

import { ConfigurationError, problemError, TokenError, TransportError, parseRetryAfter } from "./errors.js";
import type { FetchLike, TokenResponse } from "./types.js";


/** A client registered with `client_secret_basic`. */
export interface ClientSecretCredentials {
  clientId: string;
  clientSecret: string;
}

/** A client registered with `private_key_jwt`: the private half of the JWK set the operator
 * registered. */
export interface PrivateKeyCredentials {
  clientId: string;
  /** A private JWK (with `kid`), or a key object. */
  privateKey: JWK | CryptoKey | KeyObject;
  /** ES256, ES384, EdDSA, PS256 or RS256; default the JWK's `alg`, else inferred from it. */
  alg?: string;
  /** The `kid` to name (default the JWK's). */
  kid?: string;
}

export type ClientCredentials = ClientSecretCredentials | PrivateKeyCredentials;

export const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const ALGORITHMS = ["ES256", "ES384", "EdDSA", "PS256", "RS256"];

export interface TokenSourceOptions {
  /** `https://<broker>/oauth/token`. */
  tokenEndpoint: string;
  credentials: ClientCredentials;
  /** Space-separated subset of the client's scopes (default: all of them). */
  scope?: string;
  /** The assertion's `aud` (default `tokenEndpoint`; the broker also accepts its issuer URL). */
  audience?: string;
  /** Fetch a new token this many seconds before the old one expires (default 30, at most
   * half the token's lifetime). */
  refreshMarginSeconds?: number;
  /** Seconds an assertion lives (default 60; the broker allows at most 300). */
  assertionLifetimeSeconds?: number;
  fetch?: FetchLike;
  /** Milliseconds since the epoch (default `Date.now`). */
  clock?: () => number;
  timeoutMs?: number;
}

function inferAlg(jwk: JWK): string | undefined {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === "EC") return jwk.crv === "P-384" ? "ES384" : jwk.crv === "P-256" ? "ES256" : undefined;
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return "EdDSA";
  if (jwk.kty === "RSA") return "PS256";
  return undefined;
}

function isJwk(key: unknown): key is JWK {
  return !!key && typeof key === "object" && typeof (key as JWK).kty === "string";
}

/** Caches and refreshes the client's access token. */
export class TokenSource {
  readonly tokenEndpoint: string;
  private readonly options: TokenSourceOptions;
  private readonly fetcher: FetchLike;
  private readonly clock: () => number;
  private cached: { token: string; refreshAt: number; expiresAt: number } | null = null;
  private pending: Promise<string> | null = null;
  private signingKey: Promise<{ key: CryptoKey | KeyObject | Uint8Array; alg: string; kid?: string }> | null = null;

  constructor(options: TokenSourceOptions) {
    const { credentials } = options;
    if (!credentials?.clientId) throw new ConfigurationError("credentials.clientId is required");
    if (!("clientSecret" in credentials) && !("privateKey" in credentials)) {
      throw new ConfigurationError("credentials need a clientSecret or a privateKey");
    }
    this.tokenEndpoint = options.tokenEndpoint;
    this.options = options;
    this.fetcher = options.fetch ?? ((input, init) => fetch(input, init));
    this.clock = options.clock ?? Date.now;
  }

  /** A valid access token: the cached one, or a new one when it is about to expire. */
  async token(): Promise<string> {
    const now = this.clock();
    if (this.cached && now < this.cached.refreshAt) return this.cached.token;
    this.pending ??= this.fetchToken().finally(() => {
      this.pending = null;
    });
    return this.pending;
  }

  /** Forget the cached token (after a `401`): the next {@link token} fetches a new one.
   * Given `token`, only when it is still the cached one. */
  invalidate(token?: string): void {
    if (token === undefined || this.cached?.token === token) this.cached = null;
  }

  private async assertion(credentials: PrivateKeyCredentials): Promise<string> {
    this.signingKey ??= (async () => {
      const given = credentials.privateKey;
      let alg = credentials.alg;
      let kid = credentials.kid;
      let key: CryptoKey | KeyObject | Uint8Array;
      if (isJwk(given)) {
        if (!given.d) throw new ConfigurationError("privateKey must be a private JWK (with d)");
        alg ??= inferAlg(given);
        kid ??= given.kid;
        if (!alg) throw new ConfigurationError("give alg: it cannot be inferred from the key");
        key = await importJWK(given, alg);
      } else {
        if (!alg) throw new ConfigurationError("give alg with a key object");
        key = given;
      }
      if (!ALGORITHMS.includes(alg)) {
        throw new ConfigurationError(`alg ${alg} is not accepted by the broker (${ALGORITHMS.join(", ")})`);
      }
      return kid === undefined ? { key, alg } : { key, alg, kid };
    })();
    const { key, alg, kid } = await this.signingKey;
    const now = Math.floor(this.clock() / 1000);
    const lifetime = this.options.assertionLifetimeSeconds ?? 60;
    return new SignJWT({})
      .setProtectedHeader(kid === undefined ? { alg, typ: "JWT" } : { alg, kid, typ: "JWT" })
      .setIssuer(credentials.clientId)
      .setSubject(credentials.clientId)
      .setAudience(this.options.audience ?? this.tokenEndpoint)
      .setIssuedAt(now)
      .setExpirationTime(now + lifetime)
      .setJti(randomUUID()) // never reused: the broker refuses a replayed assertion
      .sign(key);
  }

  private async fetchToken(): Promise<string> {
    const { credentials, scope } = this.options;
    const form = new URLSearchParams({ grant_type: "client_credentials" });
    if (scope) form.set("scope", scope);
    const headers: Record<string, string> = {
      "content-type": "application/x-www-form-urlencoded",
      accept: "application/json",
    };
    if ("clientSecret" in credentials) {
      // RFC 6749 s2.3.1: each part form-encoded, then base64
      const pair = `${encodeURIComponent(credentials.clientId)}:${encodeURIComponent(credentials.clientSecret)}`;
      headers["authorization"] = `Basic ${Buffer.from(pair).toString("base64")}`;
    } else {
      form.set("client_assertion_type", ASSERTION_TYPE);
      form.set("client_assertion", await this.assertion(credentials));
    }
    const started = this.clock();
    let response: Response;
    try {
      response = await this.fetcher(this.tokenEndpoint, {
        method: "POST",
        headers,
        body: form.toString(),
        redirect: "error",
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      });
    } catch (e) {
      throw new TransportError(`token endpoint ${this.tokenEndpoint} unreachable: ${String(e)}`, null, { cause: e });
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (response.status !== 200) {
      const type = response.headers.get("content-type") ?? "";
      if (type.includes("problem+json") && body && typeof body === "object") {
        throw problemError(response.status, body as Record<string, unknown>, response.headers.get("retry-after"));
      }
      const error = (body as { error?: unknown } | undefined)?.error;
      const description = (body as { error_description?: unknown } | undefined)?.error_description;
      throw new TokenError(
        response.status,
        typeof error === "string" ? error : `http_${response.status}`,
        typeof description === "string" ? description : null,
        parseRetryAfter(response.headers.get("retry-after"), this.clock()),
      );
    }
    const token = body as Partial<TokenResponse> | undefined;
    if (!token || typeof token.access_token !== "string" || typeof token.expires_in !== "number") {
      throw new TransportError("the token endpoint answered 200 without access_token and expires_in", 200);
    }
    const lifetime = token.expires_in * 1000;
    const margin = Math.min((this.options.refreshMarginSeconds ?? 30) * 1000, lifetime / 2);
    this.cached = {
      token: token.access_token,
      expiresAt: started + lifetime,
      refreshAt: started + lifetime - margin,
    };
    return token.access_token;
  }
}
