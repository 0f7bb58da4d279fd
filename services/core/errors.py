"""The project's exception tree. Every error a client can see carries a machine ``code``,
an HTTP ``status`` and a ``title``; the gateway renders them all as RFC 9457 problems.

Each class with its ``status`` and ``code`` (a subclass that sets neither inherits its
parent's); ``[V]`` marks a class that is also a ``ValueError``, and so are its subclasses:

    IsaBrokerError                    500  internal_error
    ├── AuthenticationFailed          401  unauthenticated
    │                                      (one shape for every reason; the reason is logged)
    ├── Forbidden                     403  forbidden
    │   ├── InsufficientScope         403  insufficient_scope
    │   └── SharingRefused            403  sharing_refused
    │                                      (no ISA permits the share; detail names why)
    ├── NotFound                      404  not_found
    │   └── UnknownMessageType        404  unknown_message_type
    ├── Conflict                      409  conflict
    │   ├── IdempotencyKeyReused      409  idempotency_key_reused
    │   ├── LifecycleConflict         409  lifecycle_conflict
    │   │   ├── NotAReleaseNotice     409  not_a_release_notice
    │   │   ├── NotADipBreach         409  not_a_dip_breach
    │   │   ├── NoticeCancelled       409  notice_cancelled
    │   │   ├── NoticeReleased        409  notice_released
    │   │   ├── BreachClosed          409  breach_closed
    │   │   ├── BreachExpired         409  breach_expired
    │   │   └── ConcurrentUpdate      409  concurrent_update
    │   ├── DutyCleared               409  duty_cleared
    │   │                                  (acknowledging a duty that was cleared)
    │   └── EncryptionKeyInUse        409  encryption_key_in_use
    │                                      (retiring the last key a subscription needs)
    ├── ActionNotAllowed [V]          422  action_not_allowed
    │                                      (names the flow's allowed action codes)
    ├── EncryptionKeyRequired [V]     422  encryption_key_required
    │                                      (the party has registered no public key)
    ├── InvalidEncryptionKey [V]      422  invalid_encryption_key
    ├── PayloadTooLarge               413  payload_too_large
    ├── UnsupportedMediaType          415  unsupported_media_type
    │                                      (names the expected media type)
    ├── RequestHeaderTooLarge         431  header_too_large
    │                                      (names the header)
    ├── RateLimited                   429  rate_limited
    │                                      (carries retry_after seconds, sent as Retry-After)
    ├── InvalidRequest [V]            400  invalid_request
    │   ├── InvalidClient             401  invalid_client
    │   │                                  (OAuth token endpoint, RFC 6749 s5.2)
    │   └── JsonTooDeep               400  json_too_deep
    │                                      (nesting beyond the configured depth; names it)
    ├── ValidationFailed [V]          422  validation_failed
    │   │                                  (carries a list of {pointer, message})
    │   └── MalformedJson             422  validation_failed
    │                                      (not UTF-8 JSON, NaN, lone surrogate, U+0000)
    ├── ConfigurationError            500  configuration_error
    │   │                                  (start-up; never sent to a client)
    │   ├── AgreementFileInvalid [V]  500  agreement_file_invalid
    │   ├── PartyRegisterInvalid [V]  500  party_register_invalid
    │   └── FictionalPolicies [V]     500  fictional_policies
    │                                      (production refuses agreements marked fictional)
    └── Unavailable                   503  unavailable
"""

from __future__ import annotations

from typing import Any, ClassVar


class IsaBrokerError(Exception):
    """Root of every error raised by isa-broker code."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class AuthenticationFailed(IsaBrokerError):
    code = "unauthenticated"
    status = 401
    title = "Authentication required"


class Forbidden(IsaBrokerError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "Token lacks the required scope"


class SharingRefused(Forbidden):
    """No Information Sharing Agreement permits this share. ``reason`` is one of
    ``no_agreement``, ``sender_not_party``, ``purpose_not_covered``,
    ``agreement_not_in_force``, ``no_recipient``."""

    code = "sharing_refused"
    title = "No information sharing agreement permits this share"

    def __init__(self, detail: str, *, reason: str, **extra: Any) -> None:
        super().__init__(detail, reason=reason, **extra)
        self.reason = reason


class NotFound(IsaBrokerError):
    code = "not_found"
    status = 404
    title = "Not found"


class UnknownMessageType(NotFound):
    code = "unknown_message_type"
    title = "Unknown message type"


class Conflict(IsaBrokerError):
    code = "conflict"
    status = 409
    title = "Conflict"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    title = "Idempotency-Key was already used with a different request"


class LifecycleConflict(Conflict):
    """An update (amend, cancel, confirm-release, outcome) that the message's type or current
    state does not allow. Each subclass names the state or type that refused it."""

    code = "lifecycle_conflict"
    title = "The message's type or state does not allow this update"


class NotAReleaseNotice(LifecycleConflict):
    code = "not_a_release_notice"


class NotADipBreach(LifecycleConflict):
    code = "not_a_dip_breach"


class NoticeCancelled(LifecycleConflict):
    code = "notice_cancelled"


class NoticeReleased(LifecycleConflict):
    code = "notice_released"


class BreachClosed(LifecycleConflict):
    code = "breach_closed"


class BreachExpired(LifecycleConflict):
    code = "breach_expired"


class ConcurrentUpdate(LifecycleConflict):
    code = "concurrent_update"
    title = "Another update to this message was accepted at the same time; retry"


class DutyCleared(Conflict):
    """The duty was cleared (the notice was cancelled, or amended so that the party is no
    longer entitled): there is nothing left to acknowledge."""

    code = "duty_cleared"
    title = "The duty was cleared; there is nothing to acknowledge"


class ActionNotAllowed(IsaBrokerError, ValueError):
    """An acknowledgement's action code is not one the agreement's flow allows."""

    code = "action_not_allowed"
    status = 422
    title = "The action is not one the agreement allows"


class EncryptionKeyRequired(IsaBrokerError, ValueError):
    """Deliveries would be encrypted to the party's public key, and it has registered none."""

    code = "encryption_key_required"
    status = 422
    title = "Register a public encryption key first"


class InvalidEncryptionKey(IsaBrokerError, ValueError):
    code = "invalid_encryption_key"
    status = 422
    title = "Not a usable public encryption key"


class EncryptionKeyInUse(Conflict):
    """The party's last key not retired, while a subscription's deliveries need one."""

    code = "encryption_key_in_use"
    title = "The key is the last one a subscription can be encrypted to"


class PayloadTooLarge(IsaBrokerError):
    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(IsaBrokerError):
    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class RequestHeaderTooLarge(IsaBrokerError):
    code = "header_too_large"
    status = 431
    title = "Request header field too large"


class RateLimited(IsaBrokerError):
    """Too many requests from one client (or address); ``retry_after`` is the whole number
    of seconds, at least 1, until the next request would be accepted."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after


class InvalidRequest(IsaBrokerError, ValueError):
    code = "invalid_request"
    status = 400
    title = "Invalid request"


class InvalidClient(InvalidRequest):
    code = "invalid_client"
    status = 401
    title = "Client authentication failed"


class JsonTooDeep(InvalidRequest):
    code = "json_too_deep"
    title = "JSON nested too deeply"


class ValidationFailed(IsaBrokerError, ValueError):
    code = "validation_failed"
    status = 422
    title = "The message does not match its schema"

    def __init__(self, detail: str, errors: list[dict[str, str]]) -> None:
        super().__init__(detail, errors=errors)
        self.errors = errors


class MalformedJson(ValidationFailed):
    """The body is not JSON as RFC 8259 defines it (UTF-8, no NaN or Infinity, no lone
    surrogates), or a string holds U+0000, which no store accepts. Same code as the
    schema failures: either way the body was not acceptable as sent."""

    title = "The request body is not valid JSON"


class ConfigurationError(IsaBrokerError):
    code = "configuration_error"
    title = "Configuration error"


class AgreementFileInvalid(ConfigurationError, ValueError):
    code = "agreement_file_invalid"


class PartyRegisterInvalid(ConfigurationError, ValueError):
    code = "party_register_invalid"


class FictionalPolicies(ConfigurationError, ValueError):
    code = "fictional_policies"


class Unavailable(IsaBrokerError):
    code = "unavailable"
    status = 503
    title = "Service unavailable"
