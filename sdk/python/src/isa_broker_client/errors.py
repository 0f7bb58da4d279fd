"""Every error this package raises, in one tree.

The broker answers errors as RFC 9457 problem details (``application/problem+json``) whose
``code`` is the machine reason; :func:`error_from_response` turns each answer into the
class of its code (or, for a code this version does not know, of its status), carrying what
a program branches on (``code``, ``status``, ``retry_after``) and what a person reads
(``title``, ``detail``, the failing ``fields`` and, for a refusal, the agreement ``clause``).
The token endpoint answers in the OAuth 2.0 shape instead (RFC 6749 s5.2): :class:`TokenError`.

``[V]`` marks a class that is also a ``ValueError`` (and so are its subclasses)::

    IsaBrokerClientError
    ├── BrokerUnreachable                 no answer: connection refused, timeout, TLS failure
    ├── TokenError                        /oauth/token refused (invalid_client, invalid_scope...)
    ├── ProblemError                      any other error answer, by status and code:
    │   ├── BadRequest [V]            400   invalid_request, json_too_deep
    │   ├── Unauthenticated           401   unauthenticated
    │   ├── Forbidden                 403   forbidden
    │   │   ├── InsufficientScope     403   insufficient_scope
    │   │   └── SharingRefused        403   sharing_refused (reason, rules, clause)
    │   ├── NotFound                  404   not_found, unknown_message_type
    │   ├── Conflict                  409   conflict, and the lifecycle conflicts
    │   │   ├── IdempotencyKeyReused  409   idempotency_key_reused
    │   │   └── DutyCleared           409   duty_cleared
    │   ├── RequestTooLarge           413, 431   payload_too_large, header_too_large
    │   ├── UnsupportedMediaType      415   unsupported_media_type
    │   ├── ValidationFailed [V]      422   validation_failed, webhook_url_refused,
    │   │                                   filter_never_matches, encryption_key_required,
    │   │                                   invalid_encryption_key, action_not_allowed
    │   ├── RateLimited               429   rate_limited (retry_after)
    │   └── ServerError               5xx   internal_error
    │       └── Unavailable           503   unavailable, kafka_access_control_failed
    ├── WebhookKeyInvalid [V]             a whsec_/whpk_ key that is not well formed
    ├── WebhookVerificationError [V]      a webhook request to refuse (answer 401)
    │   ├── WebhookTimestampInvalid       timestamp missing, malformed or outside tolerance
    │   └── WebhookSignatureInvalid       headers missing, or no signature verifies
    └── DeliveryDecryptError [V]          a sealed delivery that does not open
        ├── UnknownKey                    encrypted to a key id you do not hold
        ├── Misrouted                     for another recipient, message or delivery
        ├── NotSignedByBroker             not signed by the broker for this delivery: forged
        └── BrokerKeysUnavailable         signed by a key id not yet known, and the broker's
                                          keys could not be fetched again (try again later)

Messages name ids, fields, codes and clauses, never a secret, a key or a person's data.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

PROBLEM_JSON = "application/problem+json"


class IsaBrokerClientError(Exception):
    """Root of every error raised by ``isa_broker_client``."""


class BrokerUnreachable(IsaBrokerClientError):
    """No answer from the broker (connection refused or reset, timeout, TLS failure). Safe to
    repeat a publish with the same ``Idempotency-Key``."""


class TokenError(IsaBrokerClientError):
    """The token endpoint refused (RFC 6749 s5.2): ``error`` is ``invalid_client`` for any
    authentication failure, ``invalid_scope``, ``invalid_request``, ``unsupported_grant_type``
    or ``temporarily_unavailable`` (429, with ``retry_after``)."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(f"token endpoint answered {status} {error}: {description or ''}".strip())
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after


class ProblemError(IsaBrokerClientError):
    """An error answer of the broker's API, as an RFC 9457 problem.

    ``code`` and ``status`` are for programs; ``title``, ``detail``, ``fields`` and
    ``clause`` for people (branch on ``code``, never on ``detail``). ``problem`` is the whole
    document, for members this class does not name (``rules``, ``required_scope``...)."""

    #: the codes this class stands for (the broker's ``code`` member)
    codes: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        status: int,
        code: str,
        title: str,
        detail: str,
        retry_after: int | None = None,
        fields: tuple[str, ...] = (),
        clause: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.retry_after = retry_after
        #: JSON pointers of the failing fields (``/release/date``), or the header named
        self.fields = fields
        #: the agreement clause behind a refusal (``ISA-WS-003@1.0#release-to-youth-justice``)
        self.clause = clause
        self.problem: dict[str, Any] = dict(problem or {})


class BadRequest(ProblemError, ValueError):
    codes = frozenset({"invalid_request", "json_too_deep"})


class Unauthenticated(ProblemError):
    """The token was refused (also after the one automatic refresh)."""

    codes = frozenset({"unauthenticated"})


class Forbidden(ProblemError):
    codes = frozenset({"forbidden"})


class InsufficientScope(Forbidden):
    """The client lacks the scope; ``problem["required_scope"]`` names it."""

    codes = frozenset({"insufficient_scope"})


class SharingRefused(Forbidden):
    """No information sharing agreement permits this share: ``reason`` says which check
    refused it (``no_agreement``, ``sender_not_party``, ``purpose_not_covered``,
    ``agreement_not_in_force``, ``no_recipient``), ``rules`` the candidate flows and why
    each did not apply, ``clause`` the first of them."""

    codes = frozenset({"sharing_refused"})

    @property
    def reason(self) -> str | None:
        reason = self.problem.get("reason")
        return reason if isinstance(reason, str) else None

    @property
    def rules(self) -> list[dict[str, Any]]:
        rules = self.problem.get("rules")
        return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


class NotFound(ProblemError):
    """Unknown, or another agency's: the broker answers both alike."""

    codes = frozenset({"not_found", "unknown_message_type"})


class Conflict(ProblemError):
    codes = frozenset(
        {
            "conflict",
            "lifecycle_conflict",
            "not_a_release_notice",
            "not_a_dip_breach",
            "notice_cancelled",
            "notice_released",
            "breach_closed",
            "breach_expired",
            "concurrent_update",
            "encryption_key_in_use",
            "no_kafka_subscription",
        }
    )


class IdempotencyKeyReused(Conflict):
    """The ``Idempotency-Key`` was used before for a different request."""

    codes = frozenset({"idempotency_key_reused"})


class DutyCleared(Conflict):
    """Nothing to acknowledge any more: the notice was cancelled, or an amendment ended the
    entitlement."""

    codes = frozenset({"duty_cleared"})


class RequestTooLarge(ProblemError):
    codes = frozenset({"payload_too_large", "header_too_large"})


class UnsupportedMediaType(ProblemError):
    codes = frozenset({"unsupported_media_type"})


class ValidationFailed(ProblemError, ValueError):
    """The request was understood but refused as invalid; ``fields`` point at the culprits."""

    codes = frozenset(
        {
            "validation_failed",
            "webhook_url_refused",
            "filter_never_matches",
            "encryption_key_required",
            "invalid_encryption_key",
            "action_not_allowed",
        }
    )


class RateLimited(ProblemError):
    """Too many requests: wait ``retry_after`` seconds before sending again."""

    codes = frozenset({"rate_limited"})


class ServerError(ProblemError):
    codes = frozenset({"internal_error"})


class Unavailable(ServerError):
    """The broker cannot take the request now (its database or Kafka cluster): repeat it
    later, a publish with the same ``Idempotency-Key``."""

    codes = frozenset({"unavailable", "kafka_access_control_failed"})


class WebhookKeyInvalid(IsaBrokerClientError, ValueError):
    """A verifying key that is not a Standard Webhooks ``whsec_`` secret or ``whpk_`` public
    key of the right size (never names the key)."""


class WebhookVerificationError(IsaBrokerClientError, ValueError):
    """A webhook request that did not come from the broker as it stands: answer ``401``."""

    #: ``timestamp`` or ``signature``
    kind: ClassVar[str] = "signature"


class WebhookTimestampInvalid(WebhookVerificationError):
    """``webhook-timestamp`` missing, not a number, or further from the clock than the
    tolerance (a replayed capture, or an unsynchronised clock)."""

    kind = "timestamp"


class WebhookSignatureInvalid(WebhookVerificationError):
    """``webhook-id`` or ``webhook-signature`` missing, or no signature in the header
    verifies with the keys held."""

    kind = "signature"


class DeliveryDecryptError(IsaBrokerClientError, ValueError):
    """A sealed delivery (encrypted webhook body or agency-topic record) that is malformed
    or does not decrypt with the keys given."""

    kind: ClassVar[str] = "malformed"


class UnknownKey(DeliveryDecryptError):
    """Encrypted to a key id not among your private keys (load every key you still hold)."""

    kind = "unknown_key"


class Misrouted(DeliveryDecryptError):
    """Encrypted to another recipient, or bound to another message or delivery than the
    record or request it arrived in: a misrouted or copied delivery, never use it."""

    kind = "misrouted"


class NotSignedByBroker(DeliveryDecryptError):
    """Decrypts, but the broker did not sign it for this delivery: a forgery. Never act on
    it; tell the broker's operators."""

    kind = "not_signed_by_broker"


class BrokerKeysUnavailable(DeliveryDecryptError):
    """Signed by a key id not yet known, and fetching the broker's keys again failed: the
    delivery may be genuine; try it again later."""

    kind = "broker_keys_unavailable"


# -- problem answers -----------------------------------------------------------------------------

_PROBLEM_CLASSES: tuple[type[ProblemError], ...] = (
    BadRequest,
    Unauthenticated,
    Forbidden,
    InsufficientScope,
    SharingRefused,
    NotFound,
    Conflict,
    IdempotencyKeyReused,
    DutyCleared,
    RequestTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    RateLimited,
    ServerError,
    Unavailable,
)
_BY_CODE: dict[str, type[ProblemError]] = {c: cls for cls in _PROBLEM_CLASSES for c in cls.codes}
_BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: ProblemError,
    409: Conflict,
    413: RequestTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
    431: RequestTooLarge,
    503: Unavailable,
}


def problem_class(status: int, code: str) -> type[ProblemError]:
    """The class for an answer: by ``code`` when known, else by ``status`` (5xx:
    :class:`ServerError`), else :class:`ProblemError`."""
    found = _BY_CODE.get(code)
    if found is not None:
        return found
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else ProblemError


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> int | None:
    """A ``Retry-After`` header as whole seconds: delta-seconds, or an HTTP date
    (RFC 9110 s10.2.3) counted from ``now``; ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return max(0, int(seconds + 0.999))


def _fields(body: Mapping[str, Any]) -> tuple[str, ...]:
    """The JSON pointers of ``errors[]`` (validation), else the ``field`` (an invalid
    encryption key) or ``header`` (431) the problem names."""
    found: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict) and isinstance(error.get("pointer"), str):
                found.append(error["pointer"])
    for member in ("field", "header"):
        if not found and isinstance(body.get(member), str):
            found.append(body[member])
    return tuple(found)


def _clause(body: Mapping[str, Any]) -> str | None:
    """The agreement clause of a refusal: the first candidate rule of a ``sharing_refused``
    as ``AGREEMENT@version#flow`` (the notation of the decisions API), or a ``clause``
    member if the broker sends one."""
    clause = body.get("clause")
    if isinstance(clause, str):
        return clause
    rules = body.get("rules")
    if isinstance(rules, list):
        for rule in rules:
            if isinstance(rule, dict) and isinstance(rule.get("agreement"), str):
                ref = rule["agreement"]
                if isinstance(rule.get("version"), str):
                    ref += "@" + rule["version"]
                name = rule.get("flow") or rule.get("rule")
                return f"{ref}#{name}" if isinstance(name, str) else ref
    return None


def error_from_problem(
    status: int, headers: Mapping[str, str], body: Mapping[str, Any] | None
) -> ProblemError:
    """The exception for an error answer with ``status``, ``headers`` (any case) and
    ``body`` (the parsed problem document, or ``None`` when the answer was not JSON, e.g. a
    proxy's HTML page)."""
    body = body or {}
    lowered = {k.lower(): v for k, v in headers.items()}
    code = body.get("code") if isinstance(body.get("code"), str) else None
    code = code or f"http_{status}"
    title = body.get("title") if isinstance(body.get("title"), str) else None
    detail = body.get("detail") if isinstance(body.get("detail"), str) else None
    retry_after = retry_after_seconds(lowered.get("retry-after"))
    if retry_after is None and isinstance(body.get("retry_after"), int):
        retry_after = body["retry_after"]
    cls = problem_class(status, code)
    return cls(
        status=status,
        code=code,
        title=title or httpx.codes.get_reason_phrase(status) or "Error",
        detail=detail or "",
        retry_after=retry_after,
        fields=_fields(body),
        clause=_clause(body),
        problem=body,
    )


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = json.loads(response.content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def error_from_response(response: httpx.Response) -> ProblemError:
    """:func:`error_from_problem` for an ``httpx`` answer (status >= 400)."""
    return error_from_problem(response.status_code, response.headers, _json_object(response))


def token_error_from_response(response: httpx.Response) -> TokenError:
    """The token endpoint's OAuth error, or a problem document (413, 431) read as one."""
    body = _json_object(response) or {}
    error = body.get("error") or body.get("code") or f"http_{response.status_code}"
    description = body.get("error_description") or body.get("detail")
    return TokenError(
        response.status_code,
        str(error),
        str(description) if description is not None else None,
        retry_after_seconds(response.headers.get("retry-after")),
    )
