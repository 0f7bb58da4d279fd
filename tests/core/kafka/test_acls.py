"""Kafka ACL and SCRAM requests: wire encoding (round trips and bytes written out by hand
from Kafka's message definitions), the SaltedPassword against RFC 7677 and an independent
RFC 5802 computation, and the typed API over a fake admin client that speaks the wire
format."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import astuple
from io import BytesIO
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.protocol.api import RequestHeader_v2
from hypothesis import given
from hypothesis import strategies as st

from services.core.errors import InvalidRequest, Unavailable
from services.core.kafka.acl_wire import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse_v0,
    CreateAclsRequest,
    CreateAclsResponse_v2,
    DeleteAclsRequest,
    DeleteAclsResponse_v3,
    DescribeAclsRequest,
    DescribeAclsResponse_v3,
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse_v0,
    PatternType,
    ResourceType,
    ScramMechanism,
    salted_password,
)
from services.core.kafka.acls import (
    AccessControlFailed,
    ClusterAccess,
    grant_party,
    issue_party_credential,
    party_bindings,
    party_group_prefix,
    party_principal,
    party_user,
    revoke_party,
)
from services.core.kafka.config import KafkaProfile

PROFILE = KafkaProfile(bootstrap_servers="127.0.0.1:9", embedded=False)
PARTY = "eastborough-police-iom"
# what Apache Kafka 4.x answers in ApiVersions for these keys
KAFKA_4_VERSIONS = {29: (1, 3), 30: (1, 3), 31: (1, 3), 50: (0, 0), 51: (0, 0)}
TOPIC_READ = AclBinding(
    ResourceType.TOPIC,
    "t",
    PatternType.LITERAL,
    "User:u",
    "*",
    AclOperation.READ,
    AclPermissionType.ALLOW,
)


def wire(request: Any, versions: dict[int, tuple[int, int]] = KAFKA_4_VERSIONS) -> Any:
    """The struct aiokafka would send, read back as a broker would read it."""
    struct = request.prepare(versions)
    return type(struct).decode(struct.encode())


def reply(response_class: Any, *fields: Any) -> Any:
    response = response_class(*fields)
    return response_class.decode(response.encode())


# -- wire format --------------------------------------------------------------------------


def test_negotiates_the_highest_shared_version() -> None:
    assert DescribeAclsRequest(AclBindingFilter()).prepare({29: (1, 3)}).API_VERSION == 3
    assert CreateAclsRequest([]).prepare({30: (0, 2)}).API_VERSION == 2
    assert DeleteAclsRequest([]).prepare({31: (2, 5)}).API_VERSION == 3
    with pytest.raises(NotImplementedError):
        DescribeAclsRequest(AclBindingFilter()).prepare({29: (0, 1)})


def test_flexible_requests_use_the_v2_request_header() -> None:
    struct = CreateAclsRequest([TOPIC_READ]).prepare(KAFKA_4_VERSIONS)
    assert struct.FLEXIBLE_VERSION
    assert isinstance(struct.build_request_header(7, "c"), RequestHeader_v2)


def test_create_acls_bytes_match_kafkas_definition() -> None:
    # creations: compact array of 1 (0x02); each: int8 type, compact string name,
    # int8 pattern, compact principal, compact host, int8 operation, int8 permission, tags
    expected = (
        b"\x02" + b"\x02" + b"\x02t" + b"\x03" + b"\x07User:u" + b"\x02*" + b"\x03\x03" + b"\x00"
    ) + b"\x00"
    assert CreateAclsRequest([TOPIC_READ]).prepare(KAFKA_4_VERSIONS).encode() == expected


def test_scram_request_bytes_match_kafkas_definition() -> None:
    describe = DescribeUserScramCredentialsRequest
    assert describe(["ab"]).prepare(KAFKA_4_VERSIONS).encode() == b"\x02\x03ab\x00\x00"
    assert describe(None).prepare(KAFKA_4_VERSIONS).encode() == b"\x00\x00"  # null: every user
    deletion = AlterUserScramCredentialsRequest(deletions=[("ab", ScramMechanism.SCRAM_SHA_512)])
    # deletions [name "ab", mechanism 2, tags], upsertions [], tags
    assert deletion.prepare(KAFKA_4_VERSIONS).encode() == b"\x02\x03ab\x02\x00" + b"\x01" + b"\x00"


@pytest.mark.parametrize(
    "request_",
    [
        DescribeAclsRequest(AclBindingFilter(principal="User:u")),
        DescribeAclsRequest(AclBindingFilter()),
        CreateAclsRequest([TOPIC_READ, TOPIC_READ]),
        DeleteAclsRequest([AclBindingFilter(), AclBindingFilter.exactly(TOPIC_READ)]),
        DescribeUserScramCredentialsRequest(["a", "b"]),
        DescribeUserScramCredentialsRequest(None),
        AlterUserScramCredentialsRequest(
            deletions=[("a", ScramMechanism.SCRAM_SHA_256)],
            upsertions=[("b", ScramMechanism.SCRAM_SHA_512, 8192, b"s" * 32, b"p" * 64)],
        ),
    ],
    ids=lambda r: type(r).__name__,
)
def test_request_round_trip(request_: Any) -> None:
    struct = request_.prepare(KAFKA_4_VERSIONS)
    assert type(struct).decode(struct.encode()) == struct


def test_response_round_trip() -> None:
    acl = ("User:u", "*", 3, 3, {})
    cases = [
        DescribeAclsResponse_v3(0, 0, None, [(2, "t", 3, [acl], {})], {}),
        CreateAclsResponse_v2(5, [(0, None, {}), (31, "Cluster authorization failed.", {})], {}),
        DeleteAclsResponse_v3(
            0, [(0, None, [(0, None, 2, "t", 3, "User:u", "*", 3, 3, {})], {})], {}
        ),
        DescribeUserScramCredentialsResponse_v0(
            0, 0, None, [("a", 0, None, [(2, 8192, {})], {}), ("b", 91, "absent", [], {})], {}
        ),
        AlterUserScramCredentialsResponse_v0(0, [("a", 93, "Too few iterations", {})], {}),
    ]
    for response in cases:
        assert type(response).decode(response.encode()) == response


def test_response_with_unknown_tagged_fields_still_decodes() -> None:
    # a newer broker may add tagged fields anywhere: tag 0 of 1 byte at the top level
    raw = (
        b"\x00\x00\x00\x00"  # throttle_time_ms
        + b"\x00\x00"  # error_code
        + b"\x00"  # error_message: null
        + b"\x02\x02\x02t\x04"  # resources: 1; TOPIC, "t", PREFIXED
        + b"\x02\x07User:u\x02*\x08\x03\x00"  # acls: 1; DESCRIBE ALLOW, no tags
        + b"\x00"  # resource tags
        + b"\x01\x00\x01\xff"  # tags: one field, tag 0, 1 byte
    )
    response = DescribeAclsResponse_v3.decode(BytesIO(raw))
    assert response.resources == [(2, "t", 4, [("User:u", "*", 8, 3, {})], {})]
    assert response.tags == {0: b"\xff"}


def test_salted_password_is_redacted_from_the_logged_request() -> None:
    salted = bytes.fromhex("ab" * 64)
    request = AlterUserScramCredentialsRequest(
        upsertions=[("a", ScramMechanism.SCRAM_SHA_512, 8192, b"s" * 32, salted)]
    )
    struct = request.prepare(KAFKA_4_VERSIONS)
    assert "<redacted>" in repr(struct)
    assert "\\xab" not in repr(struct) and "abab" not in repr(struct)
    assert "\\xab" not in repr(request)


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
bindings = st.builds(
    AclBinding,
    st.sampled_from([ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID]),
    names,
    st.sampled_from([PatternType.LITERAL, PatternType.PREFIXED]),
    names.map(lambda n: "User:" + n),
    st.sampled_from(["*", "127.0.0.1"]),
    st.sampled_from([op for op in AclOperation if op > AclOperation.ALL]),
    st.sampled_from([AclPermissionType.ALLOW, AclPermissionType.DENY]),
)


@given(st.lists(bindings, max_size=5))
def test_any_bindings_survive_the_wire(acls: list[AclBinding]) -> None:
    struct = wire(CreateAclsRequest(acls))
    assert [AclBinding(*_typed(row[:7])) for row in struct.creations] == acls


def _typed(row: tuple[Any, ...]) -> tuple[Any, ...]:
    t, name, p, principal, host, op, perm = row
    kinds = (AclOperation(op), AclPermissionType(perm))
    return ResourceType(t), name, PatternType(p), principal, host, *kinds


# -- SaltedPassword -----------------------------------------------------------------------


def test_salted_password_matches_rfc_7677() -> None:
    """RFC 7677 s3: user "user", password "pencil"; the client proof and the server
    signature of the exchange follow from SaltedPassword alone."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    salted = salted_password("pencil", salt, 4096, ScramMechanism.SCRAM_SHA_256)
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (
        "n=user,r=rOprNGfwEbeRWgbNEkqO,"
        f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
        f"c=biws,r={nonce}"
    ).encode()
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    assert base64.b64encode(proof) == b"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    server_signature = hmac.digest(server_key, auth_message, "sha256")
    assert base64.b64encode(server_signature) == b"6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _hi(password: bytes, salt: bytes, iterations: int, digest: str) -> bytes:
    """RFC 5802 s2.2 Hi() as written there: U1 = HMAC(str, salt + INT(1)), Ui = HMAC(str,
    Ui-1), the result the XOR of all Ui."""
    u = hmac.digest(password, salt + b"\x00\x00\x00\x01", digest)
    out = bytearray(u)
    for _ in range(iterations - 1):
        u = hmac.digest(password, u, digest)
        out = bytearray(a ^ b for a, b in zip(out, u, strict=True))
    return bytes(out)


def test_salted_password_sha_512_matches_rfc_5802_hi() -> None:
    password, salt = "correct horse battery staple ünïcode", bytes(range(32))
    salted = salted_password(password, salt, 4096, ScramMechanism.SCRAM_SHA_512)
    assert salted == _hi(password.encode("utf-8"), salt, 4096, "sha512")
    assert salted.hex() == (
        "2a572075de2ac321c9936aa745c27f6d5c2315c05d82929d1d8ba84e0d396cae"
        "dd6c09097579c12d9fc3c10a1febb52951e3410e15349fa3324aeb1e67bbb33a"
    )


# -- party naming -------------------------------------------------------------------------


def test_party_bindings_are_the_least_privilege_set() -> None:
    principal = "User:agency-eastborough-police-iom"
    assert party_user(PARTY) == "agency-eastborough-police-iom"
    assert party_principal(PARTY) == principal
    assert party_group_prefix(PARTY) == "eastborough-police-iom."
    got = {
        (b.resource_type, b.name, b.pattern_type, b.operation, b.permission, b.principal, b.host)
        for b in party_bindings(PROFILE, PARTY)
    }
    allow, read, describe = AclPermissionType.ALLOW, AclOperation.READ, AclOperation.DESCRIBE
    topic = (ResourceType.TOPIC, "isa.agency.eastborough-police-iom.v1", PatternType.LITERAL)
    group = (ResourceType.GROUP, "eastborough-police-iom.", PatternType.PREFIXED)
    assert got == {
        (*topic, read, allow, principal, "*"),
        (*topic, describe, allow, principal, "*"),
        (*group, read, allow, principal, "*"),
        (*group, describe, allow, principal, "*"),
    }
    assert len(party_bindings(PROFILE, PARTY)) == 4


@pytest.mark.parametrize("party", ["*", "a.b", "Upper", "x", "-a", "a b", "a" * 64, ""])
def test_party_ids_that_could_widen_an_acl_are_refused(party: str) -> None:
    with pytest.raises(InvalidRequest):
        party_bindings(PROFILE, party)


# -- the typed API over a fake admin client -----------------------------------------------


class _Cluster:
    controller = object()


class _Client:
    def __init__(self, protocol: str) -> None:
        self.cluster = _Cluster()
        self._security_protocol = protocol
        self._bootstrap_servers = "127.0.0.1:9"

    async def force_metadata_update(self) -> None:
        return None


Handler = Callable[[Any], Any]


class FakeAdmin:
    """Encodes each request as aiokafka would, decodes it as a broker would, and answers
    with the encoded-then-decoded response ``handle`` builds."""

    def __init__(
        self,
        handle: Handler,
        protocol: str = "SASL_SSL",
        versions: dict[int, tuple[int, int]] = KAFKA_4_VERSIONS,
    ) -> None:
        self.handle = handle
        self.versions = versions
        self._client = _Client(protocol)
        self.sent: list[Any] = []

    async def start(self) -> None:
        return None

    async def _send_to_controller(self, request: Any) -> Any:
        struct = wire(request, self.versions)
        self.sent.append(struct)
        response = self.handle(struct)
        return type(response).decode(response.encode())


def access_over(handle: Handler, **kw: Any) -> tuple[ClusterAccess, FakeAdmin]:
    admin = FakeAdmin(handle, **kw)
    return ClusterAccess(admin), admin  # type: ignore[arg-type]


async def test_create_acls_sends_each_binding_and_names_a_refused_one() -> None:
    def handle(req: Any) -> Any:
        return CreateAclsResponse_v2(
            0, [(0, None, {}), (31, "Cluster authorization failed.", {})], {}
        )

    access, admin = access_over(handle)
    other = AclBinding(
        ResourceType.GROUP,
        "g.",
        PatternType.PREFIXED,
        "User:u",
        "*",
        AclOperation.DESCRIBE,
        AclPermissionType.ALLOW,
    )
    with pytest.raises(AccessControlFailed) as e:
        await access.create_acls([TOPIC_READ, other])
    assert e.value.kafka_error == 31
    assert "CLUSTER_AUTHORIZATION_FAILED" in str(e.value) and "GROUP PREFIXED 'g.'" in str(e.value)
    assert isinstance(e.value, Unavailable)
    assert admin.sent[0].API_VERSION == 3 and len(admin.sent[0].creations) == 2


async def test_create_acls_refuses_a_filter_shaped_binding() -> None:
    access, admin = access_over(lambda req: pytest.fail("nothing should be sent"))
    wild = AclBinding(
        ResourceType.ANY,
        "t",
        PatternType.MATCH,
        "User:u",
        "*",
        AclOperation.ANY,
        AclPermissionType.ALLOW,
    )
    with pytest.raises(InvalidRequest):
        await access.create_acls([wild])


async def test_describe_and_delete_acls_return_typed_bindings() -> None:
    row = (2, "t", 3, "User:u", "*", 3, 3)

    def handle(req: Any) -> Any:
        if req.API_KEY == 29:
            assert req.principal_filter == "User:u" and req.resource_name_filter is None
            return DescribeAclsResponse_v3(0, 0, None, [(*row[:3], [(*row[3:], {})], {})], {})
        assert req.filters[0][:7] == (2, "t", 3, "User:u", "*", 3, 3)
        return DeleteAclsResponse_v3(0, [(0, None, [(0, None, *row, {})], {})], {})

    access, _ = access_over(handle)
    assert await access.describe_acls(AclBindingFilter(principal="User:u")) == [TOPIC_READ]
    assert await access.delete_acls([AclBindingFilter.exactly(TOPIC_READ)]) == [TOPIC_READ]
    assert await access.delete_acls([]) == []


async def test_upsert_sends_a_salted_password_that_verifies() -> None:
    def handle(req: Any) -> Any:
        return AlterUserScramCredentialsResponse_v0(0, [("agency-a1", 0, None, {})], {})

    access, admin = access_over(handle)
    await access.upsert_scram_user("agency-a1", "s3cret-pw", "SCRAM-SHA-512", 8192)
    (struct,) = admin.sent
    assert struct.deletions == []
    ((name, mechanism, iterations, salt, salted, _),) = struct.upsertions
    assert (name, mechanism, iterations) == ("agency-a1", 2, 8192)
    assert len(salt) >= 32
    assert salted == hashlib.pbkdf2_hmac("sha512", b"s3cret-pw", salt, 8192)
    assert "s3cret-pw" not in repr(struct)


@pytest.mark.parametrize(
    ("kw", "protocol"),
    [
        ({"iterations": 1000}, "SASL_SSL"),
        ({"iterations": 20000}, "SASL_SSL"),
        ({"mechanism": "SCRAM-SHA-1"}, "SASL_SSL"),
        ({"password": ""}, "SASL_SSL"),
        ({}, "SASL_PLAINTEXT"),
        ({}, "PLAINTEXT"),
    ],
)
async def test_upsert_refuses_weak_or_cleartext_credentials(
    kw: dict[str, Any], protocol: str
) -> None:
    access, _ = access_over(lambda req: pytest.fail("nothing should be sent"), protocol=protocol)
    args = {"name": "agency-a1", "password": "s3cret-pw"} | kw
    with pytest.raises(InvalidRequest) as e:
        await access.upsert_scram_user(**args)
    assert "s3cret-pw" not in str(e.value)


async def test_kafka_refusing_a_credential_is_named_without_the_password() -> None:
    def handle(req: Any) -> Any:
        return AlterUserScramCredentialsResponse_v0(
            0, [("agency-a1", 93, "Too few iterations", {})], {}
        )

    access, _ = access_over(handle)
    with pytest.raises(AccessControlFailed) as e:
        await access.upsert_scram_user("agency-a1", "s3cret-pw")
    message = str(e.value)
    assert "UNACCEPTABLE_CREDENTIAL (93)" in message and "agency-a1" in message
    assert "s3cret-pw" not in message


async def test_delete_scram_user_missing_is_an_error_unless_allowed() -> None:
    def handle(req: Any) -> Any:
        return AlterUserScramCredentialsResponse_v0(0, [("agency-a1", 91, "absent", {})], {})

    access, admin = access_over(handle)
    assert await access.delete_scram_user("agency-a1", missing_ok=True) is False
    with pytest.raises(AccessControlFailed, match="RESOURCE_NOT_FOUND"):
        await access.delete_scram_user("agency-a1", ScramMechanism.SCRAM_SHA_256)
    assert [s.deletions for s in admin.sent] == [[("agency-a1", 2, {})], [("agency-a1", 1, {})]]


async def test_describe_scram_users_leaves_out_unknown_names() -> None:
    def handle(req: Any) -> Any:
        assert req.users == [("a", {}), ("b", {})]
        results = [("a", 0, None, [(2, 8192, {}), (1, 4096, {})], {}), ("b", 91, "no", [], {})]
        return DescribeUserScramCredentialsResponse_v0(0, 0, None, results, {})

    access, _ = access_over(handle)
    (user,) = await access.describe_scram_users(["b", "a", "a"])
    assert user.name == "a"
    assert [(c.mechanism, c.iterations) for c in user.credentials] == [
        (ScramMechanism.SCRAM_SHA_512, 8192),
        (ScramMechanism.SCRAM_SHA_256, 4096),
    ]
    assert await access.describe_scram_users([]) == []


async def test_grant_party_creates_the_set_and_removes_anything_else() -> None:
    wanted = party_bindings(PROFILE, PARTY)
    stray = AclBinding(
        ResourceType.TOPIC,
        "isa.agency.eastborough-police-iom.v1",
        PatternType.LITERAL,
        party_principal(PARTY),
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )

    def handle(req: Any) -> Any:
        if req.API_KEY == 30:
            return CreateAclsResponse_v2(0, [(0, None, {})] * len(req.creations), {})
        if req.API_KEY == 29:
            held = [*wanted, stray]
            resources = [
                (b.resource_type, b.name, b.pattern_type,
                 [(b.principal, b.host, b.operation, b.permission, {})], {})
                for b in held
            ]  # fmt: skip
            return DescribeAclsResponse_v3(0, 0, None, resources, {})
        assert [f[:7] for f in req.filters] == [astuple(stray)]
        return DeleteAclsResponse_v3(0, [(0, None, [], {})], {})

    access, admin = access_over(handle)
    assert await grant_party(access, PROFILE, PARTY) == wanted
    assert [s.API_KEY for s in admin.sent] == [30, 29, 31]


async def test_revoke_party_twice_is_quiet() -> None:
    def handle(req: Any) -> Any:
        if req.API_KEY == 31:
            assert req.filters[0][3] == party_principal(PARTY)
            assert req.filters[0][:3] == (ResourceType.ANY, None, PatternType.ANY)
            return DeleteAclsResponse_v3(0, [(0, None, [], {})], {})
        return AlterUserScramCredentialsResponse_v0(0, [(party_user(PARTY), 91, "no", {})], {})

    access, admin = access_over(handle)
    assert await revoke_party(access, PARTY) == []
    assert await revoke_party(access, PARTY) == []
    mechanisms = sorted(s.deletions[0][1] for s in admin.sent if s.API_KEY == 51)
    assert mechanisms == [1, 1, 2, 2]


async def test_issued_credential_keeps_its_password_out_of_repr() -> None:
    def handle(req: Any) -> Any:
        return AlterUserScramCredentialsResponse_v0(0, [(party_user(PARTY), 0, None, {})], {})

    access, _ = access_over(handle)
    credential = await issue_party_credential(access, PARTY)
    assert credential.username == "agency-eastborough-police-iom"
    assert len(credential.password) >= 40
    assert credential.password not in repr(credential)


async def test_connection_failures_become_unavailable() -> None:
    def handle(req: Any) -> Any:
        raise KafkaConnectionError("Connection at 127.0.0.1:9 broken")

    access, _ = access_over(handle)
    with pytest.raises(Unavailable) as e:
        await access.describe_acls()
    assert not isinstance(e.value, AccessControlFailed)
    assert "KafkaConnectionError" in str(e.value)


async def test_a_cluster_without_the_versions_is_named() -> None:
    access, _ = access_over(lambda req: None, versions={29: (0, 1)})
    with pytest.raises(AccessControlFailed, match="does not support DescribeAclsRequest"):
        await access.describe_acls()
