"""Kafka access control for agencies that consume their projections from Kafka: one SCRAM
principal per party with a ``kafka`` subscription, allowed to read its own topic and its own
consumer groups and nothing else.

Naming rules (one place, used by grant, revoke and the credential the agency is given):

- SCRAM user ``agency-<party>``, principal ``User:agency-<party>``. The prefix keeps agency
  principals apart from the product's own (a party may be registered as ``isa-broker``).
- READ and DESCRIBE on the LITERAL topic ``profile.agency_topic(party)``
  (``isa.agency.<party>.v1``).
- READ and DESCRIBE on the PREFIXED consumer-group name ``<party>.``: the agency names its
  groups ``<party>.<anything>`` (``eastborough-police-iom.case-system``). Party ids match
  ``^[a-z][a-z0-9-]{1,62}$`` (no dot), so one party's prefix never covers another party's
  groups, nor the product's (``isa-broker-router``, ``isa-broker-router-priority``).
- Host ``*``; ALLOW only. Nothing on the cluster, no WRITE anywhere, no transactional ids.

Protocol: aiokafka 0.14 has no admin calls for ACLs or SCRAM credentials, so the requests
are defined in :mod:`.acl_wire` on its protocol framework, at the flexible versions Apache Kafka 4.x
accepts (Kafka's ``common/message/*.json``; KIP-896 removed version 0 of the ACL calls in
4.0): DescribeAcls (29), CreateAcls (30) and DeleteAcls (31) at v2-v3, the highest both
sides support chosen per connection from ApiVersions; DescribeUserScramCredentials (50)
and AlterUserScramCredentials (51) at v0. A change is accepted by the active controller
and reaches every broker through the metadata log a moment after the call returns.

Secrets: the password never leaves this process. The SaltedPassword of RFC 5802 s3 is
computed here and sent (Kafka's AlterUserScramCredentials); it is as good as the password
for SCRAM, so it is only sent over TLS, and the request's ``repr`` (which aiokafka logs at
DEBUG) shows it as ``<redacted>``. No message or log line carries either.

Errors (aiokafka's exceptions never leave this module):

    IsaBrokerError
    ├── InvalidRequest              400  a party id, binding or credential this module refuses
    ├── ConfigurationError               admin client settings aiokafka refuses
    └── Unavailable                 503  the cluster cannot be reached or timed out
        └── AccessControlFailed     503  the cluster answered with an error; detail names the
                                         operation, the resource and Kafka's error
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError, for_code

from ..errors import ConfigurationError, InvalidRequest, Unavailable
from .acl_wire import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AlterUserScramCredentialsRequest,
    CreateAclsRequest,
    DeleteAclsRequest,
    DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
    PatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    ScramUser,
    salted_password,
)
from .config import KafkaProfile

PARTY_ID = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
USER_PREFIX = "agency-"
ANY_HOST = "*"
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 16384  # Kafka's ScramMechanism / ScramControlManager
SALT_BYTES = 32
RESOURCE_NOT_FOUND = 91
_TLS = {"SSL", "SASL_SSL"}
#: a filter matching every binding
ANY_ACL = AclBindingFilter()


class AccessControlFailed(Unavailable):
    """Kafka refused or failed an ACL or SCRAM change. ``kafka_error`` is its error code;
    ``kafka_message`` its own text, kept out of ``detail`` when long (an authorization
    refusal describes the broker's connection objects), for the log."""

    code = "kafka_access_control_failed"
    title = "The Kafka cluster refused an access-control change"

    def __init__(
        self, detail: str, *, kafka_error: int, kafka_message: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail, kafka_error=kafka_error, **extra)
        self.kafka_error = kafka_error
        self.kafka_message = kafka_message


@dataclass(frozen=True)
class PartyCredential:
    """What the agency is given once; the password is not kept by the product."""

    party: str
    username: str
    mechanism: ScramMechanism
    password: str = field(repr=False)


# -- the cluster ------------------------------------------------------------------------------


class ClusterAccess:
    """ACLs and SCRAM credentials on one cluster, through an aiokafka admin client.

    ``ClusterAccess(admin)`` uses a client its caller owns (and closes);
    ``ClusterAccess.connect(profile)`` or ``ClusterAccess.connect(**aiokafka_kwargs)`` makes
    and owns one. Use ``async with``, or ``start()`` and ``aclose()``."""

    def __init__(self, admin: AIOKafkaAdminClient, *, owned: bool = False) -> None:
        self._admin = admin
        self._owned = owned
        client = getattr(admin, "_client", None)
        self._security_protocol = str(getattr(client, "_security_protocol", "PLAINTEXT"))
        self._where = str(getattr(client, "_bootstrap_servers", "the Kafka cluster"))

    @classmethod
    def connect(cls, profile: KafkaProfile | None = None, /, **client_kwargs: Any) -> ClusterAccess:
        """An access owning its admin client, connected with ``profile``'s client settings
        (``client_kwargs`` override them) or with ``client_kwargs`` alone."""
        kwargs: dict[str, Any] = {"client_id": "isa-broker-access-control"}
        if profile is not None:
            kwargs.update(profile.client_kwargs())
        kwargs.update(client_kwargs)
        try:
            admin = AIOKafkaAdminClient(**kwargs)
        except (KafkaError, ValueError, TypeError) as e:
            raise ConfigurationError(
                f"Kafka admin client settings refused: {type(e).__name__}"
            ) from e
        return cls(admin, owned=True)

    async def start(self) -> None:
        try:
            await self._admin.start()
        except (KafkaError, OSError, TimeoutError) as e:
            raise Unavailable(f"cannot reach Kafka at {self._where}: {type(e).__name__}") from e

    async def aclose(self) -> None:
        if self._owned:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await self._admin.close()

    async def __aenter__(self) -> ClusterAccess:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, request: Any, doing: str) -> Any:
        """Send ``request`` to the node aiokafka takes for the controller (any broker, in
        KRaft: it forwards changes to the active controller)."""
        try:
            await self._admin.start()
            cluster = self._admin._client.cluster
            if cluster.controller is None:
                await self._admin._client.force_metadata_update()
            if cluster.controller is None:
                raise Unavailable(f"{doing}: {self._where} named no broker to send it to")
            return await self._admin._send_to_controller(request)
        except (IncompatibleBrokerVersion, NotImplementedError) as e:
            raise AccessControlFailed(
                f"{doing}: the cluster does not support {type(request).__name__} "
                "at the versions this product speaks",
                kafka_error=35,
            ) from e
        except (KafkaError, OSError, TimeoutError) as e:
            raise Unavailable(f"{doing} on {self._where} failed: {type(e).__name__}") from e

    # ACLs

    async def create_acls(self, bindings: Iterable[AclBinding]) -> None:
        """Create ``bindings``; one that already exists is left as it is."""
        todo = list(bindings)
        for b in todo:
            _check_binding(b)
        if not todo:
            return
        response = await self._send(CreateAclsRequest(todo), "creating ACLs")
        for b, (code, message, _) in zip(todo, response.results, strict=True):
            _raise_for(code, message, f"creating ACL {b}")

    async def delete_acls(self, acl_filters: Iterable[AclBindingFilter]) -> list[AclBinding]:
        """Delete every binding any of ``acl_filters`` matches; returns those deleted."""
        todo = list(acl_filters)
        if not todo:
            return []
        response = await self._send(DeleteAclsRequest(todo), "deleting ACLs")
        deleted: list[AclBinding] = []
        for f, (code, message, matching, _) in zip(todo, response.filter_results, strict=True):
            _raise_for(code, message, f"deleting ACLs of {f}")
            for m_code, m_message, *acl, _tags in matching:
                binding = _binding(*acl)
                _raise_for(m_code, m_message, f"deleting ACL {binding}")
                deleted.append(binding)
        return deleted

    async def describe_acls(self, acl_filter: AclBindingFilter = ANY_ACL) -> list[AclBinding]:
        response = await self._send(DescribeAclsRequest(acl_filter), "describing ACLs")
        _raise_for(response.error_code, response.error_message, f"describing ACLs of {acl_filter}")
        return [
            _binding(rtype, name, ptype, principal, host, op, perm)
            for rtype, name, ptype, acls, _ in response.resources
            for principal, host, op, perm, _ in acls
        ]

    # SCRAM credentials

    async def upsert_scram_user(
        self,
        name: str,
        password: str,
        mechanism: ScramMechanism | str = ScramMechanism.SCRAM_SHA_512,
        iterations: int = 8192,
    ) -> None:
        """Create or replace ``name``'s credential for ``mechanism``. Only SaltedPassword
        is sent, and only over TLS."""
        mech = _mechanism(mechanism)
        if not name:
            raise InvalidRequest("a SCRAM user name must not be empty")
        if not password:
            raise InvalidRequest(f"the password for SCRAM user {name!r} must not be empty")
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise InvalidRequest(
                f"SCRAM iterations for {name!r} must be {MIN_ITERATIONS}-{MAX_ITERATIONS}, "
                f"not {iterations}"
            )
        if self._security_protocol not in _TLS:
            raise InvalidRequest(
                f"refusing to send a SCRAM credential for {name!r} over "
                f"{self._security_protocol}: use SSL or SASL_SSL"
            )
        salt = secrets.token_bytes(SALT_BYTES)
        upsertion = (
            name,
            mech,
            iterations,
            salt,
            salted_password(password, salt, iterations, mech),
        )
        doing = f"setting the {mech} credential of {name!r}"
        response = await self._send(AlterUserScramCredentialsRequest(upsertions=[upsertion]), doing)
        for _user, code, message, _ in response.results:
            _raise_for(code, message, doing)

    async def delete_scram_user(
        self,
        name: str,
        mechanism: ScramMechanism | str = ScramMechanism.SCRAM_SHA_512,
        *,
        missing_ok: bool = False,
    ) -> bool:
        """Delete ``name``'s credential for ``mechanism``; False if there was none (and
        ``missing_ok``)."""
        mech = _mechanism(mechanism)
        doing = f"deleting the {mech} credential of {name!r}"
        request = AlterUserScramCredentialsRequest(deletions=[(name, mech)])
        response = await self._send(request, doing)
        for _user, code, message, _ in response.results:
            if code == RESOURCE_NOT_FOUND and missing_ok:
                return False
            _raise_for(code, message, doing)
        return True

    async def describe_scram_users(self, names: Iterable[str] | None = None) -> list[ScramUser]:
        """The SCRAM credentials of ``names`` (every user if None), sorted by name; a name
        with no credential is left out."""
        wanted = None if names is None else sorted(set(names))
        if wanted == []:
            return []
        doing = "describing SCRAM users"
        response = await self._send(DescribeUserScramCredentialsRequest(wanted), doing)
        _raise_for(response.error_code, response.error_message, doing)
        users: list[ScramUser] = []
        for user, code, message, infos, _ in response.results:
            if code == RESOURCE_NOT_FOUND:
                continue
            _raise_for(code, message, f"describing SCRAM user {user!r}")
            creds = tuple(
                ScramCredentialInfo(mech, iterations)
                for code_, iterations, _ in infos
                if (mech := ScramMechanism.of_code(code_)) is not None
            )
            users.append(ScramUser(user, creds))
        return sorted(users, key=lambda u: u.name)


def _mechanism(value: ScramMechanism | str) -> ScramMechanism:
    try:
        return ScramMechanism(value)
    except ValueError as e:
        raise InvalidRequest(f"unknown SCRAM mechanism {value!r}") from e


def _binding(
    rtype: int, name: str, ptype: int, principal: str, host: str, op: int, perm: int
) -> AclBinding:
    return AclBinding(
        ResourceType(rtype),
        name,
        PatternType(ptype),
        principal,
        host,
        AclOperation(op),
        AclPermissionType(perm),
    )


def _check_binding(b: AclBinding) -> None:
    problems = []
    if b.resource_type in (ResourceType.ANY, ResourceType.UNKNOWN):
        problems.append("a resource type")
    if b.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
        problems.append("a LITERAL or PREFIXED pattern")
    if b.operation in (AclOperation.ANY, AclOperation.UNKNOWN):
        problems.append("an operation")
    if b.permission not in (AclPermissionType.ALLOW, AclPermissionType.DENY):
        problems.append("ALLOW or DENY")
    if not b.name or ":" not in b.principal or not b.host:
        problems.append("a resource name, a 'Type:name' principal and a host")
    if problems:
        raise InvalidRequest(f"ACL {b} needs " + ", ".join(problems))


def _raise_for(code: int, message: str | None, doing: str) -> None:
    if code == 0:
        return
    name = _ERROR_NAMES.get(code) or for_code(code).message
    detail = f"{doing} refused by Kafka: {name} ({code})"
    if message and len(message) <= 120:
        detail += f": {message}"
    raise AccessControlFailed(detail, kafka_error=code, kafka_message=message)


# Codes aiokafka 0.14 does not name (Kafka's Errors.java)
_ERROR_NAMES = {
    91: "RESOURCE_NOT_FOUND",
    92: "DUPLICATE_RESOURCE",
    93: "UNACCEPTABLE_CREDENTIAL",
}


# -- parties ----------------------------------------------------------------------------------


def _party(party: str) -> str:
    if not PARTY_ID.fullmatch(party):
        raise InvalidRequest(f"party id {party!r} does not match {PARTY_ID.pattern}")
    return party


def party_user(party: str) -> str:
    """The SCRAM user name the agency authenticates as."""
    return USER_PREFIX + _party(party)


def party_principal(party: str) -> str:
    return "User:" + party_user(party)


def party_group_prefix(party: str) -> str:
    """The agency's consumer groups are named ``<party>.<anything>``."""
    return _party(party) + "."


def party_bindings(profile: KafkaProfile, party: str) -> list[AclBinding]:
    """Everything ``party``'s principal may do: read and describe its own topic and its own
    consumer groups."""
    principal = party_principal(party)
    resources = [
        (ResourceType.TOPIC, profile.agency_topic(party), PatternType.LITERAL),
        (ResourceType.GROUP, party_group_prefix(party), PatternType.PREFIXED),
    ]
    return [
        AclBinding(rtype, name, ptype, principal, ANY_HOST, op, AclPermissionType.ALLOW)
        for rtype, name, ptype in resources
        for op in (AclOperation.READ, AclOperation.DESCRIBE)
    ]


def new_password() -> str:
    """A password to issue: 256 random bits, URL-safe base64."""
    return secrets.token_urlsafe(32)


async def issue_party_credential(
    access: ClusterAccess,
    party: str,
    *,
    password: str | None = None,
    mechanism: ScramMechanism | str = ScramMechanism.SCRAM_SHA_512,
    iterations: int = 8192,
) -> PartyCredential:
    """Create (or replace: the old password stops working) ``party``'s SCRAM credential.
    The returned password is shown to the agency once and kept nowhere by the product."""
    username = party_user(party)
    password = password or new_password()
    mech = _mechanism(mechanism)
    await access.upsert_scram_user(username, password, mech, iterations)
    return PartyCredential(party=party, username=username, mechanism=mech, password=password)


async def grant_party(access: ClusterAccess, profile: KafkaProfile, party: str) -> list[AclBinding]:
    """Make ``party``'s ACLs exactly :func:`party_bindings`: create the missing, delete any
    other ACL of its principal. Idempotent; the credential is left as it is."""
    wanted = party_bindings(profile, party)
    await access.create_acls(wanted)
    held = await access.describe_acls(AclBindingFilter(principal=party_principal(party)))
    extra = [AclBindingFilter.exactly(b) for b in held if b not in wanted]
    await access.delete_acls(extra)
    return wanted


async def revoke_party(access: ClusterAccess, party: str) -> list[AclBinding]:
    """Delete every ACL of ``party``'s principal and its SCRAM credentials. Idempotent;
    returns the ACLs deleted. Connections already authenticated keep their session until
    they close (or re-authenticate, with ``connections.max.reauth.ms``), but are no longer
    authorized for anything."""
    deleted = await access.delete_acls([AclBindingFilter(principal=party_principal(party))])
    for mechanism in ScramMechanism:
        await access.delete_scram_user(party_user(party), mechanism, missing_ok=True)
    return deleted
