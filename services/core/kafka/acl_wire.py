# aiokafka ships no type information, so its protocol classes are ``Any`` to mypy.
# mypy: disallow-subclassing-any=False
"""Kafka's access-control and SCRAM-credential calls, on aiokafka's protocol framework:
the values (resource, pattern, operation and permission codes; bindings and filters; SCRAM
mechanisms) and the requests and responses of DescribeAcls (29), CreateAcls (30) and
DeleteAcls (31) at v2-v3, and DescribeUserScramCredentials (50) and
AlterUserScramCredentials (51) at v0, as Kafka's ``common/message/*.json`` define them.

aiokafka 0.14 has none of these calls; :mod:`.acls` uses them to manage the agencies'
principals. Nothing here talks to a cluster or knows the product's naming rules."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from enum import IntEnum, StrEnum
from typing import Any

from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

# -- values -----------------------------------------------------------------------------------


class _Coded(IntEnum):
    """Kafka's int8 codes; a code this module does not know reads as UNKNOWN (0)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        return cls(0)


class ResourceType(_Coded):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(_Coded):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(_Coded):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class AclPermissionType(_Coded):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


class ScramMechanism(StrEnum):
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"

    @property
    def wire_code(self) -> int:
        return 1 if self is ScramMechanism.SCRAM_SHA_256 else 2

    @property
    def hash_name(self) -> str:
        return "sha256" if self is ScramMechanism.SCRAM_SHA_256 else "sha512"

    @classmethod
    def of_code(cls, code: int) -> ScramMechanism | None:
        return {1: cls.SCRAM_SHA_256, 2: cls.SCRAM_SHA_512}.get(code)


@dataclass(frozen=True)
class AclBinding:
    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: AclOperation
    permission: AclPermissionType

    def __str__(self) -> str:
        return (
            f"{self.permission.name} {self.principal} {self.operation.name} on "
            f"{self.resource_type.name} {self.pattern_type.name} {self.name!r}"
        )


@dataclass(frozen=True)
class AclBindingFilter:
    """Matches bindings; ``None`` and the ANY codes match everything."""

    resource_type: ResourceType = ResourceType.ANY
    name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: AclOperation = AclOperation.ANY
    permission: AclPermissionType = AclPermissionType.ANY

    @classmethod
    def exactly(cls, b: AclBinding) -> AclBindingFilter:
        return cls(
            b.resource_type, b.name, b.pattern_type, b.principal, b.host, b.operation, b.permission
        )

    def __str__(self) -> str:
        return (
            f"principal {self.principal or '*'} on {self.resource_type.name} "
            f"{self.pattern_type.name} {self.name or '*'}"
        )


@dataclass(frozen=True)
class ScramCredentialInfo:
    mechanism: ScramMechanism
    iterations: int


@dataclass(frozen=True)
class ScramUser:
    name: str
    credentials: tuple[ScramCredentialInfo, ...]


# -- RFC 5802 ---------------------------------------------------------------------------------


def salted_password(
    password: str, salt: bytes, iterations: int, mechanism: ScramMechanism
) -> bytes:
    """RFC 5802 s3: ``SaltedPassword := Hi(Normalize(password), salt, i)``, where Hi is
    PBKDF2 with HMAC over the mechanism's hash and one output block. Kafka normalizes a
    password to its UTF-8 bytes (``ScramFormatter.normalize``), without SASLprep."""
    return hashlib.pbkdf2_hmac(mechanism.hash_name, password.encode("utf-8"), salt, iterations)


# -- wire structs -----------------------------------------------------------------------------
# Field names follow Kafka's JSON definitions in snake case. Every struct of a flexible
# version ends in tagged fields: ``_schema`` and ``_array`` add them. Requests send none
# (aiokafka 0.14's TaggedFields.encode leaves out each field's length); responses may
# carry any, and they decode.


class _SecretBytes(CompactBytes):
    """COMPACT_BYTES whose value never appears in a ``repr`` (aiokafka logs requests)."""

    @classmethod
    def repr(cls, value: bytes | None) -> str:
        return "<redacted>"


_STR = CompactString("utf-8")
_TAGS = ("tags", TaggedFields)
_THROTTLE = ("throttle_time_ms", Int32)
_ERROR = (("error_code", Int16), ("error_message", _STR))
_RESOURCE = (("resource_type", Int8), ("resource_name", _STR), ("pattern_type", Int8))
_ACE = (("principal", _STR), ("host", _STR), ("operation", Int8), ("permission_type", Int8))
_FILTER = (
    *(("resource_type_filter", Int8), ("resource_name_filter", _STR)),
    *(("pattern_type_filter", Int8), ("principal_filter", _STR), ("host_filter", _STR)),
    *(("operation", Int8), ("permission_type", Int8)),
)


_SCRAM_INFO = CompactArray(("mechanism", Int8), ("iterations", Int32), _TAGS)
_SCRAM_USER = (("name", _STR), ("mechanism", Int8))
_SCRAM_SALTED = (("iterations", Int32), ("salt", CompactBytes), ("salted_password", _SecretBytes))


def _schema(*fields: Any) -> Any:
    return Schema(*fields, _TAGS)


def _array(*fields: Any) -> Any:
    return CompactArray(*fields, _TAGS)


class DescribeAclsResponse_v2(Response):
    API_KEY, API_VERSION = 29, 2
    SCHEMA = _schema(_THROTTLE, *_ERROR, ("resources", _array(*_RESOURCE, ("acls", _array(*_ACE)))))


class DescribeAclsResponse_v3(DescribeAclsResponse_v2):
    API_VERSION = 3  # v3 admits the USER resource type; the layout is v2's


class DescribeAclsRequest_v2(RequestStruct):
    FLEXIBLE_VERSION, API_KEY, API_VERSION = True, 29, 2
    RESPONSE_TYPE = DescribeAclsResponse_v2
    SCHEMA = _schema(*_FILTER)


class DescribeAclsRequest_v3(DescribeAclsRequest_v2):
    API_VERSION, RESPONSE_TYPE = 3, DescribeAclsResponse_v3


class CreateAclsResponse_v2(Response):
    API_KEY, API_VERSION = 30, 2
    SCHEMA = _schema(_THROTTLE, ("results", _array(*_ERROR)))


class CreateAclsResponse_v3(CreateAclsResponse_v2):
    API_VERSION = 3


class CreateAclsRequest_v2(RequestStruct):
    FLEXIBLE_VERSION, API_KEY, API_VERSION = True, 30, 2
    RESPONSE_TYPE = CreateAclsResponse_v2
    SCHEMA = _schema(("creations", _array(*_RESOURCE, *_ACE)))  # Kafka: ResourcePatternType


class CreateAclsRequest_v3(CreateAclsRequest_v2):
    API_VERSION, RESPONSE_TYPE = 3, CreateAclsResponse_v3


class DeleteAclsResponse_v2(Response):
    API_KEY, API_VERSION = 31, 2
    SCHEMA = _schema(
        _THROTTLE,
        ("filter_results", _array(*_ERROR, ("matching_acls", _array(*_ERROR, *_RESOURCE, *_ACE)))),
    )


class DeleteAclsResponse_v3(DeleteAclsResponse_v2):
    API_VERSION = 3


class DeleteAclsRequest_v2(RequestStruct):
    FLEXIBLE_VERSION, API_KEY, API_VERSION = True, 31, 2
    RESPONSE_TYPE = DeleteAclsResponse_v2
    SCHEMA = _schema(("filters", _array(*_FILTER)))


class DeleteAclsRequest_v3(DeleteAclsRequest_v2):
    API_VERSION, RESPONSE_TYPE = 3, DeleteAclsResponse_v3


class DescribeUserScramCredentialsResponse_v0(Response):
    API_KEY, API_VERSION = 50, 0
    SCHEMA = _schema(
        _THROTTLE,
        *_ERROR,
        ("results", _array(("user", _STR), *_ERROR, ("credential_infos", _SCRAM_INFO))),
    )


class DescribeUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION, API_KEY, API_VERSION = True, 50, 0
    RESPONSE_TYPE = DescribeUserScramCredentialsResponse_v0
    SCHEMA = _schema(("users", _array(("name", _STR))))  # null: every user


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY, API_VERSION = 51, 0
    SCHEMA = _schema(_THROTTLE, ("results", _array(("user", _STR), *_ERROR)))


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION, API_KEY, API_VERSION = True, 51, 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = _schema(
        ("deletions", _array(*_SCRAM_USER)), ("upsertions", _array(*_SCRAM_USER, *_SCRAM_SALTED))
    )


def _row(b: AclBinding | AclBindingFilter) -> tuple[Any, ...]:
    """A creation or a filter: both lay out the same seven fields, then tagged fields."""
    return (*astuple(b), {})


class DescribeAclsRequest(Request[DescribeAclsRequest_v2 | DescribeAclsRequest_v3]):
    API_KEY = 29

    def __init__(self, acl_filter: AclBindingFilter) -> None:
        self.acl_filter = acl_filter

    def build(self, request_struct_class: type[Any]) -> Any:
        return request_struct_class(*_row(self.acl_filter))


class CreateAclsRequest(Request[CreateAclsRequest_v2 | CreateAclsRequest_v3]):
    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self.bindings = list(bindings)

    def build(self, request_struct_class: type[Any]) -> Any:
        return request_struct_class([_row(b) for b in self.bindings], {})


class DeleteAclsRequest(Request[DeleteAclsRequest_v2 | DeleteAclsRequest_v3]):
    API_KEY = 31

    def __init__(self, acl_filters: Sequence[AclBindingFilter]) -> None:
        self.acl_filters = list(acl_filters)

    def build(self, request_struct_class: type[Any]) -> Any:
        return request_struct_class([_row(f) for f in self.acl_filters], {})


class DescribeUserScramCredentialsRequest(Request[DescribeUserScramCredentialsRequest_v0]):
    API_KEY = 50

    def __init__(self, names: Sequence[str] | None) -> None:
        self.names = None if names is None else list(names)

    def build(self, request_struct_class: type[Any]) -> Any:
        users: list[tuple[Any, ...]] | None = None
        if self.names is not None:
            users = [(n, {}) for n in self.names]
        return request_struct_class(users, {})


class AlterUserScramCredentialsRequest(Request[AlterUserScramCredentialsRequest_v0]):
    API_KEY = 51

    def __init__(
        self,
        deletions: Sequence[tuple[str, ScramMechanism]] = (),
        upsertions: Sequence[tuple[str, ScramMechanism, int, bytes, bytes]] = (),
    ) -> None:
        self.deletions: list[tuple[Any, ...]] = [(n, m.wire_code, {}) for n, m in deletions]
        self.upsertions: list[tuple[Any, ...]] = [
            (n, m.wire_code, i, salt, salted, {}) for n, m, i, salt, salted in upsertions
        ]

    def build(self, request_struct_class: type[Any]) -> Any:
        return request_struct_class(self.deletions, self.upsertions, {})

    def __repr__(self) -> str:
        return f"AlterUserScramCredentialsRequest({len(self.upsertions)} upsertions, ...)"
