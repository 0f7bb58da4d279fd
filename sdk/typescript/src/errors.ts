/**
 * Every error this package throws is an {@link IsaBrokerError}. Branch on the class (or on
 * `code` / `kind`), never on `message` or `detail`, which are written for people.
 *
 * ```text
 * IsaBrokerError
 * ├── ConfigurationError             a key, URL or option this package cannot use
 * ├── TransportError                 no answer from the broker, or one that is not JSON
 * ├── TokenError                     the token endpoint refused (OAuth error: invalid_client ...)
 * ├── ProblemError                   the broker answered an RFC 9457 problem (status, code ...)
 * │   ├── BadRequestError            400  invalid_request, json_too_deep
 * │   ├── UnauthenticatedError       401  unauthenticated
 * │   ├── ForbiddenError             403
 * │   │   ├── InsufficientScopeError 403  insufficient_scope   (requiredScope)
 * │   │   └── SharingRefusedError    403  sharing_refused      (reason, rules, clause)
 * │   ├── NotFoundError              404  not_found, unknown_message_type
 * │   ├── ConflictError              409  conflict and the other 409 codes
 * │   │   ├── IdempotencyKeyReusedError  idempotency_key_reused
 * │   │   └── DutyClearedError           duty_cleared
 * │   ├── RequestTooLargeError       413, 431  payload_too_large, header_too_large
 * │   ├── UnsupportedMediaTypeError  415  unsupported_media_type
 * │   ├── ValidationError            422  validation_failed and the other 422 codes (fields)
 * │   ├── RateLimitedError           429  rate_limited                       (retryAfter)
 * │   └── ServerError                5xx  internal_error
 * │       └── UnavailableError       503  unavailable, kafka_access_control_failed
 * ├── WebhookVerificationError       kind "timestamp" | "signature"
 * └── DeliveryDecryptError           kind "malformed"
 *     ├── UnknownKeyError            kind "unknown_key"
 *     ├── MisroutedError             kind "misrouted"
 *     ├── NotSignedByBrokerError     kind "not_signed_by_broker"
 *     └── BrokerKeysUnavailableError kind "broker_keys_unavailable"
 * ```
 */

/** The root of every error thrown by this package. */
export class IsaBrokerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A key, URL or option that this package cannot use (never sent by the broker). */
export class ConfigurationError extends IsaBrokerError {}

/** The broker could not be reached, did not answer in time, or answered something that is
 * not the JSON it documents. Safe to retry with the same `Idempotency-Key`. */
export class TransportError extends IsaBrokerError {
  /** The HTTP status when an answer came, else `null`. */
  readonly status: number | null;

  constructor(message: string, status: number | null = null, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
  }
}

/** The token endpoint refused (RFC 6749 s5.2): `code` is its `error` (`invalid_client`,
 * `invalid_scope`, `invalid_request`, `unsupported_grant_type`, `temporarily_unavailable`). */
export class TokenError extends IsaBrokerError {
  readonly status: number;
  readonly code: string;
  readonly description: string | null;
  /** Seconds to wait (429), from `Retry-After`; else `null`. */
  readonly retryAfter: number | null;

  constructor(status: number, code: string, description: string | null, retryAfter: number | null) {
    super(`token endpoint answered ${status} ${code}${description ? `: ${description}` : ""}`);
    this.status = status;
    this.code = code;
    this.description = description;
    this.retryAfter = retryAfter;
  }
}

/** An RFC 9457 problem document (`application/problem+json`) as the broker sends it. */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  [member: string]: unknown;
}

/** One failing field of a `validation_failed` problem. */
export interface FieldError {
  pointer: string;
  code?: string;
  message?: string;
  in?: string;
}

/** A rule of a `sharing_refused` problem: a candidate flow and why it did not apply. */
export interface RefusalRule {
  agreement: string;
  version: string;
  flow: string;
  recipient: string | null;
  outcome: string;
  detail: string;
}

/** The broker answered with an RFC 9457 problem. */
export class ProblemError extends IsaBrokerError {
  /** The HTTP status. */
  readonly status: number;
  /** The machine code (`sharing_refused`, `validation_failed` ...): branch on this. */
  readonly code: string;
  readonly title: string;
  /** For people, not for programs. */
  readonly detail: string;
  /** The problem type URI. */
  readonly type: string | null;
  /** Seconds to wait before sending again (`429`, or a `503` that says), else `null`. */
  readonly retryAfter: number | null;
  /** JSON pointers of the fields a `422` names (its `errors[].pointer`, in order; `""` is the
   * whole body). */
  readonly fields: readonly string[];
  /** `sharing_refused`: the agreement clause of the refusal, its first rule as
   * `AGREEMENT@version#flow` (`ISA-WS-003@1.0#release-to-youth-justice`); `null` when it
   * names none (`no_agreement`, `sender_not_party`) and for every other problem. */
  readonly clause: string | null;
  /** The whole problem document, extension members included. */
  readonly problem: Readonly<Problem>;

  constructor(status: number, problem: Problem, retryAfterHeader: string | null = null) {
    const code = problemCode(problem, status);
    const title = str(problem.title) ?? `HTTP ${status}`;
    const detail = str(problem.detail) ?? "";
    super(`${status} ${code}: ${detail || title}`);
    this.status = status;
    this.code = code;
    this.title = title;
    this.detail = detail;
    this.type = str(problem.type);
    this.retryAfter = retryAfterOf(problem, retryAfterHeader);
    this.fields = fieldsOf(problem);
    this.clause = clauseOf(problem, code);
    this.problem = problem;
  }
}

export class BadRequestError extends ProblemError {}
export class UnauthenticatedError extends ProblemError {}
export class ForbiddenError extends ProblemError {}

export class InsufficientScopeError extends ForbiddenError {
  /** The scope the operation needs. */
  get requiredScope(): string | null {
    return str(this.problem["required_scope"]);
  }
}

/** No information sharing agreement permits the share. */
export class SharingRefusedError extends ForbiddenError {
  /** `no_agreement`, `sender_not_party`, `purpose_not_covered`, `agreement_not_in_force` or
   * `no_recipient`. */
  get reason(): string | null {
    return str(this.problem["reason"]);
  }

  /** The candidate flows and why each did not apply (for people). */
  get rules(): readonly RefusalRule[] {
    const rules = this.problem["rules"];
    return Array.isArray(rules) ? (rules as RefusalRule[]) : [];
  }
}

export class NotFoundError extends ProblemError {}
export class ConflictError extends ProblemError {}
export class IdempotencyKeyReusedError extends ConflictError {}
export class DutyClearedError extends ConflictError {}
export class RequestTooLargeError extends ProblemError {}
export class UnsupportedMediaTypeError extends ProblemError {}

/** `422`: the request or the message body is invalid; `fields` names what. */
export class ValidationError extends ProblemError {
  get errors(): readonly FieldError[] {
    const errors = this.problem["errors"];
    return Array.isArray(errors) ? (errors as FieldError[]) : [];
  }
}

/** `429`: wait `retryAfter` seconds before sending again. */
export class RateLimitedError extends ProblemError {}
export class ServerError extends ProblemError {}
/** `503`: the broker (its database, or its Kafka cluster) is unavailable; try again later. */
export class UnavailableError extends ServerError {}

type ProblemClass = new (status: number, problem: Problem, retryAfter: string | null) => ProblemError;

const BY_CODE: Readonly<Record<string, ProblemClass>> = {
  insufficient_scope: InsufficientScopeError,
  sharing_refused: SharingRefusedError,
  idempotency_key_reused: IdempotencyKeyReusedError,
  duty_cleared: DutyClearedError,
  rate_limited: RateLimitedError,
  unavailable: UnavailableError,
  kafka_access_control_failed: UnavailableError,
};

const BY_STATUS: Readonly<Record<number, ProblemClass>> = {
  400: BadRequestError,
  401: UnauthenticatedError,
  403: ForbiddenError,
  404: NotFoundError,
  409: ConflictError,
  413: RequestTooLargeError,
  415: UnsupportedMediaTypeError,
  422: ValidationError,
  429: RateLimitedError,
  431: RequestTooLargeError,
  503: UnavailableError,
};

/** The error for a problem answer: the most specific class its `code`, then its `status`,
 * selects. `retryAfterHeader` is the answer's `Retry-After` header, if any. */
export function problemError(
  status: number,
  problem: Problem,
  retryAfterHeader: string | null = null,
): ProblemError {
  const code = problemCode(problem, status);
  const cls =
    BY_CODE[code] ?? BY_STATUS[status] ?? (status >= 500 ? ServerError : ProblemError);
  return new cls(status, problem, retryAfterHeader);
}

// -- webhooks and sealed deliveries -----------------------------------------------------------

/** Why a webhook request was refused: `timestamp` (missing, malformed, or further from your
 * clock than the tolerance) or `signature` (no signature verifies with a key you hold). Answer
 * such a request `401` and do not process it. */
export type WebhookErrorKind = "timestamp" | "signature";

export class WebhookVerificationError extends IsaBrokerError {
  readonly kind: WebhookErrorKind;

  constructor(kind: WebhookErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** Why a sealed delivery (a record of your agency topic, or an encrypted webhook body) was
 * refused. */
export type DeliveryErrorKind =
  | "malformed"
  | "unknown_key"
  | "misrouted"
  | "not_signed_by_broker"
  | "broker_keys_unavailable";

/** Malformed, or does not decrypt with the key of its `kid`. */
export class DeliveryDecryptError extends IsaBrokerError {
  readonly kind: DeliveryErrorKind = "malformed";
}

/** Encrypted to a key id you do not hold: load every private key you still hold. */
export class UnknownKeyError extends DeliveryDecryptError {
  override readonly kind = "unknown_key";
}

/** Encrypted to another party, or bound to another message or delivery than the record's
 * headers (or the `webhook-id`), or the event inside names another message, recipient or
 * delivery: a misrouted or copied delivery. Do not use it. */
export class MisroutedError extends DeliveryDecryptError {
  override readonly kind = "misrouted";
}

/** Decrypted, but the broker did not sign it for this delivery: a forgery. Never act on it. */
export class NotSignedByBrokerError extends DeliveryDecryptError {
  override readonly kind = "not_signed_by_broker";
}

/** Signed with a key id not yet known, and fetching the broker's keys again failed: the
 * delivery may be genuine; try it again later. */
export class BrokerKeysUnavailableError extends DeliveryDecryptError {
  override readonly kind = "broker_keys_unavailable";
}

// -- helpers ------------------------------------------------------------------------------------

function str(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

function problemCode(problem: Problem, status: number): string {
  const code = str(problem.code);
  if (code) return code;
  const type = str(problem.type);
  const tail = type?.split("/").pop();
  return tail && tail !== "about:blank" ? tail : `http_${status}`;
}

/** Seconds from a `Retry-After` value: delta-seconds or an HTTP date (RFC 9110 s10.2.3). */
export function parseRetryAfter(value: string | null | undefined, nowMs = Date.now()): number | null {
  if (value == null) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - nowMs) / 1000));
}

function retryAfterOf(problem: Problem, header: string | null): number | null {
  const member = problem["retry_after"];
  if (typeof member === "number" && Number.isFinite(member) && member >= 0) {
    return Math.ceil(member);
  }
  return parseRetryAfter(header);
}

function fieldsOf(problem: Problem): string[] {
  const found: string[] = [];
  const errors = problem["errors"];
  if (Array.isArray(errors)) {
    for (const error of errors) {
      const pointer = (error as { pointer?: unknown } | null)?.pointer;
      if (typeof pointer === "string") found.push(pointer);
    }
  }
  return found;
}

/** A refusal's clause: the first candidate rule, as `AGREEMENT@version#flow`. */
function clauseOf(problem: Problem, code: string): string | null {
  const rules = problem["rules"];
  if (code !== "sharing_refused" || !Array.isArray(rules)) return null;
  const first = rules[0] as Partial<RefusalRule> | undefined;
  if (!first || typeof first.agreement !== "string") return null;
  const version = typeof first.version === "string" ? `@${first.version}` : "";
  const flow = typeof first.flow === "string" ? `#${first.flow}` : "";
  return `${first.agreement}${version}${flow}`;
}
