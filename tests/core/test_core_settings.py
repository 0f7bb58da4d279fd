"""Settings: defaults, the environment, and the production-mode safety checks.

The autouse fixture in conftest.py removes every ISA_BROKER_* / KAFKA_BOOTSTRAP_SERVERS
variable, so each test starts from a clean environment."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.cli.common import settings_problems
from services.core.settings import REPO_ROOT, Settings
from services.core.settings.environment import settings_of

SAFE = {
    "ISA_BROKER_MODE": "production",
    "ISA_BROKER_DATA_DIR": "/var/lib/isa-broker",
    "ISA_BROKER_PUBLIC_URL": "https://isa-broker.example.org",
    "ISA_BROKER_WEBHOOK_ALLOW_HTTP": "false",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-1:9093,kafka-2:9093",
    "ISA_BROKER_DATABASE_URL": "postgresql+asyncpg://broker@db/isa?sslmode=verify-full",
    "ISA_BROKER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "ISA_BROKER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "ISA_BROKER_KAFKA_SASL_USERNAME": "isa-broker",
    "ISA_BROKER_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka-password",
}

#: the SASL settings taken away, to test what is refused without a secured cluster
NO_SASL: dict[str, str | None] = {
    "ISA_BROKER_KAFKA_SECURITY_PROTOCOL": None,
    "ISA_BROKER_KAFKA_SASL_MECHANISM": None,
    "ISA_BROKER_KAFKA_SASL_USERNAME": None,
    "ISA_BROKER_KAFKA_SASL_PASSWORD_FILE": None,
}

VARIABLES = [
    "ISA_BROKER_WEBHOOK_ALLOW_HTTP",
    "ISA_BROKER_PUBLIC_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "ISA_BROKER_DATABASE_URL",
]


def _env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def _refused(monkeypatch: pytest.MonkeyPatch, **changes: str | None) -> str:
    _env(monkeypatch, {**SAFE, **changes})
    with pytest.raises(ValidationError) as info:
        Settings()
    return str(info.value)


def test_production_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ISA_BROKER_MODE unset, the production rules apply, and the message says how to
    ask for dev mode."""
    monkeypatch.delenv("ISA_BROKER_MODE")
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert "ISA_BROKER_DATABASE_URL must name PostgreSQL in production" in message
    assert "ISA_BROKER_DATA_DIR" in message and "inside the code folder" in message
    assert "ISA_BROKER_MODE is not set" in message and "ISA_BROKER_MODE=dev" in message
    _env(monkeypatch, {k: v for k, v in SAFE.items() if k != "ISA_BROKER_MODE"})
    assert Settings().mode == "production"


def test_production_defaults_to_https_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {**SAFE, "ISA_BROKER_WEBHOOK_ALLOW_HTTP": None})
    assert Settings().webhooks.allow_http is False
    monkeypatch.setenv("ISA_BROKER_MODE", "dev")
    assert Settings().webhooks.allow_http is True


def test_production_refuses_a_data_directory_inside_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for inside in (REPO_ROOT / ".data", REPO_ROOT / "services" / "x", REPO_ROOT):
        message = _refused(monkeypatch, ISA_BROKER_DATA_DIR=str(inside))
        assert "ISA_BROKER_DATA_DIR" in message and "inside the code folder" in message
    # a sibling whose name starts like the code folder's is outside it
    _env(monkeypatch, {**SAFE, "ISA_BROKER_DATA_DIR": str(REPO_ROOT) + "-data"})
    assert Settings().data_dir == Path(str(REPO_ROOT) + "-data")


def test_dev_defaults() -> None:
    s = Settings()
    assert s.mode == "dev"  # the test suite asks for dev mode (tests/conftest.py)
    assert s.policies_dir == REPO_ROOT / "isa_policies"
    assert s.schemas_dir == REPO_ROOT / "schemas"
    assert (s.policies_dir / "parties.yaml").is_file()
    assert (s.schemas_dir / "isa-agreement.schema.json").is_file()
    assert s.kafka.bootstrap_servers is None
    assert s.store.url is None
    assert s.webhooks.allow_http is True
    assert s.public_url == "http://127.0.0.1:8000"


def test_dev_mode_allows_the_unsafe_defaults() -> None:
    s = Settings(mode="dev", webhook_allow_http=True, public_url="http://localhost:9000")
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")


def test_safe_production_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, SAFE)
    s = Settings()
    assert s.mode == "production"
    assert s.kafka.bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert s.resolved_database_url == "postgresql+asyncpg://broker@db/isa?sslmode=verify-full"
    assert s.webhooks.allow_http is False
    # a real cluster: topics survive the loss of one broker
    assert (s.kafka.replication_factor, s.kafka.min_insync_replicas) == (3, 2)


@pytest.mark.parametrize(
    ("changes", "variable", "problem"),
    [
        pytest.param(
            {"ISA_BROKER_PUBLIC_URL": "http://isa-broker.example.org"},
            "ISA_BROKER_PUBLIC_URL",
            "must be https:// in production",
            id="http-url",
        ),
        pytest.param(
            {"ISA_BROKER_WEBHOOK_ALLOW_HTTP": "true"},
            "ISA_BROKER_WEBHOOK_ALLOW_HTTP",
            "must be false in production",
            id="webhook-http",
        ),
        pytest.param(
            {"KAFKA_BOOTSTRAP_SERVERS": None, **NO_SASL},
            "KAFKA_BOOTSTRAP_SERVERS",
            "is required in production",
            id="no-kafka",
        ),
        pytest.param(
            {"ISA_BROKER_KAFKA_ENCRYPTION": "false"},
            "ISA_BROKER_KAFKA_ENCRYPTION",
            "must be true in production",
            id="kafka-in-clear",
        ),
        pytest.param(
            {"ISA_BROKER_DATABASE_URL": None},
            "ISA_BROKER_DATABASE_URL",
            "must name PostgreSQL in production",
            id="default-sqlite",
        ),
        pytest.param(
            {"ISA_BROKER_DATABASE_URL": "sqlite+aiosqlite:////var/lib/isa.db"},
            "ISA_BROKER_DATABASE_URL",
            "must name PostgreSQL in production",
            id="explicit-sqlite",
        ),
        pytest.param(
            {"ISA_BROKER_DATABASE_URL": "mysql+aiomysql://db/isa"},
            "ISA_BROKER_DATABASE_URL",
            "must name PostgreSQL in production",
            id="mysql",
        ),
        pytest.param(
            {**NO_SASL, "ISA_BROKER_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
            "ISA_BROKER_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
            "is refused in production",
            id="kafka-plaintext",
        ),
        pytest.param(
            {"ISA_BROKER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
            "ISA_BROKER_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
            "is refused in production",
            id="kafka-sasl-without-tls",
        ),
        pytest.param(
            {**NO_SASL, "ISA_BROKER_KAFKA_SECURITY_PROTOCOL": "SSL"},
            "ISA_BROKER_KAFKA_SECURITY_PROTOCOL=SSL",
            "needs a client certificate in production",
            id="kafka-tls-without-client-identity",
        ),
        pytest.param(
            {"ISA_BROKER_DATABASE_URL": "postgresql+asyncpg://broker@db/isa"},
            "ISA_BROKER_DATABASE_URL",
            "must ask for verified TLS in production",
            id="database-without-tls",
        ),
        pytest.param(
            {"ISA_BROKER_DATABASE_URL": "postgresql+asyncpg://broker@db/isa?sslmode=require"},
            "ISA_BROKER_DATABASE_URL",
            "must ask for verified TLS in production",
            id="database-tls-unverified",
        ),
        pytest.param(
            {"ISA_BROKER_KAFKA_REPLICATION_FACTOR": "1"},
            "ISA_BROKER_KAFKA_REPLICATION_FACTOR=1",
            "is refused in production",
            id="replication-factor-1",
        ),
        pytest.param(
            {"ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS": "1"},
            "ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS",
            "must be at least 2 and below the replication factor (3) in production",
            id="min-insync-1",
        ),
        pytest.param(
            {"ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS": "3"},
            "ISA_BROKER_KAFKA_MIN_INSYNC_REPLICAS",
            "must be at least 2 and below the replication factor (3) in production",
            id="min-insync-equals-replicas",
        ),
    ],
)
def test_production_refuses_one_unsafe_setting(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], variable: str, problem: str
) -> None:
    message = _refused(monkeypatch, **changes)
    assert f"{variable} {problem}" in message
    # Only the offending variable is named.
    for other in set(VARIABLES) - {variable}:
        assert other not in message, other


def test_production_lists_every_problem_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {"ISA_BROKER_MODE": "production", "ISA_BROKER_WEBHOOK_ALLOW_HTTP": "1"})
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    for variable in VARIABLES:
        assert variable in message
    assert (
        "ISA_BROKER_WEBHOOK_ALLOW_HTTP must be false in production; "
        "ISA_BROKER_PUBLIC_URL must be https:// in production; "
        "KAFKA_BOOTSTRAP_SERVERS is required in production; "
        "ISA_BROKER_DATABASE_URL must name PostgreSQL in production"
    ) in message


def test_production_checks_apply_to_constructor_arguments_too() -> None:
    with pytest.raises(ValidationError, match="ISA_BROKER_PUBLIC_URL must be https://"):
        Settings(
            mode="production",
            public_url="http://example.org",
            webhook_allow_http=False,
            KAFKA_BOOTSTRAP_SERVERS="k:9092",
            database_url="postgresql+asyncpg://db/isa?sslmode=verify-full",
        )


def test_prefixed_kafka_variable_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        {
            **SAFE,
            "KAFKA_BOOTSTRAP_SERVERS": None,
            "ISA_BROKER_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        },
    )
    assert Settings().kafka.bootstrap_servers == "kafka:9092"


def test_unknown_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {"ISA_BROKER_MODE": "staging"})
    with pytest.raises(ValidationError, match="mode"):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ISA_BROKER_ACCESS_TOKEN_TTL_SECONDS", "10"),
        ("ISA_BROKER_KAFKA_PARTITIONS", "0"),
        ("ISA_BROKER_WEBHOOK_TIMEOUT_SECONDS", "0"),
        ("ISA_BROKER_WEBHOOK_RETRY_SCHEDULE", "[0, 5, 90000]"),
        ("ISA_BROKER_WEBHOOK_RETRY_SCHEDULE", "[]"),
        ("ISA_BROKER_WEBHOOK_RETRY_SCHEDULE", "[0, -1]"),
        ("ISA_BROKER_DIP_REMINDER_DAYS", "[7, 0]"),
        ("ISA_BROKER_DIP_REMINDER_DAYS", "[-2]"),
        ("ISA_BROKER_DIP_REMINDER_DAYS", "[2, 2]"),
        ("ISA_BROKER_SHORT_NOTICE_DAYS", "-1"),
    ],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    _env(monkeypatch, {variable: value})
    with pytest.raises(ValidationError):
        Settings()


def test_derived_urls_and_paths(tmp_path: Path) -> None:
    s = Settings(
        public_url="https://broker.example.org/", data_dir=tmp_path, policies_dir=tmp_path / "p"
    )
    assert s.issuer == "https://broker.example.org"
    assert s.token_audience == "https://broker.example.org/v1"
    assert s.token_endpoint == "https://broker.example.org/oauth/token"
    assert s.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'isa-broker.db'}"
    assert s.agreements_dir == tmp_path / "p" / "agreements"
    assert s.parties_file == tmp_path / "p" / "parties.yaml"


def test_environment_overrides_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _env(
        monkeypatch,
        {"ISA_BROKER_DATA_DIR": str(tmp_path), "ISA_BROKER_POLICIES_DIR": str(tmp_path / "pol")},
    )
    s = Settings()
    assert s.data_dir == tmp_path
    assert s.policies_dir == tmp_path / "pol"


def test_dip_reminder_points_are_read_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {"ISA_BROKER_DIP_REMINDER_DAYS": "[14, 7, 1]"})
    # the control of the refusals above
    assert Settings().timeliness.dip_reminder_days == (14, 7, 1)


def test_the_retry_schedule_is_read_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {"ISA_BROKER_WEBHOOK_RETRY_SCHEDULE": "[0, 5, 300]"})
    assert Settings().webhooks.retry_schedule == (0, 5, 300)
    monkeypatch.delenv("ISA_BROKER_WEBHOOK_RETRY_SCHEDULE")
    assert Settings().webhooks.retry_schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        pytest.param(
            {"ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]'},
            "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS: 127.0.0.0/8 reaches loopback",
            id="allowlist-loopback",
        ),
        pytest.param(
            {"ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["10.0.0.0/8", "169.254.0.0/16"]'},
            "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS: 169.254.0.0/16 reaches loopback, link-local",
            id="allowlist-metadata",
        ),
        pytest.param(
            {"ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["0.0.0.0/0"]'},
            "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS: 0.0.0.0/0 reaches",
            id="allowlist-everything",
        ),
        pytest.param(
            {"ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["::/0"]'},
            "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS: ::/0 reaches",
            id="allowlist-everything-v6",
        ),
        pytest.param(
            {"ISA_BROKER_TOKEN_LEEWAY_SECONDS": "120"},
            "ISA_BROKER_TOKEN_LEEWAY_SECONDS must be at most 60 in production",
            id="leeway",
        ),
        pytest.param(
            {"ISA_BROKER_RATE_LIMIT_PER_MINUTE": "0"},
            "rate limits cannot be disabled (0) in production",
            id="no-rate-limit",
        ),
        pytest.param(
            {
                "ISA_BROKER_OIDC_ISSUER": "https://idp.example.org",
                "ISA_BROKER_OIDC_JWKS_URL": "http://idp.example.org/jwks",
            },
            "ISA_BROKER_OIDC_JWKS_URL must be https:// in production",
            id="oidc-http-jwks",
        ),
    ],
)
def test_production_refuses_unsafe_security_settings(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], problem: str
) -> None:
    assert problem in _refused(monkeypatch, **changes)


def test_production_accepts_a_private_partner_network(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, {**SAFE, "ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS": '["10.20.0.0/16"]'})
    assert Settings().webhooks.allowed_networks == ("10.20.0.0/16",)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"oidc_jwks_url": "https://idp.example.org/jwks"}, "OIDC_JWKS_URL needs"),
        (
            {"oidc_issuer": "http://127.0.0.1:8000", "oidc_jwks_url": "http://x/jwks"},
            "must be an external provider",
        ),
        (
            {
                "oidc_issuer": "https://idp",
                "oidc_jwks_url": "https://idp/j",
                "oidc_subject_claim": "email",
            },
            "must be client_id, azp or sub",
        ),
        ({"oidc_algorithms": ["HS256"]}, "use asymmetric algorithms"),
        ({"oidc_algorithms": ["none"]}, "use asymmetric algorithms"),
        ({"webhook_allowed_networks": ["10.0.0.1/8"]}, "is not a network in CIDR form"),
    ],
)
def test_inconsistent_security_settings_are_refused_in_any_mode(
    values: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**values)  # type: ignore[arg-type]
    assert problem in str(info.value)


# -- Kafka client security -------------------------------------------------------------------


def test_dev_defaults_talk_plaintext_to_one_broker() -> None:
    s = Settings()
    assert s.kafka.security_protocol == "PLAINTEXT"
    assert (s.kafka.replication_factor, s.kafka.min_insync_replicas) == (1, 1)
    # a three-broker cluster in dev mode gets the safe min.insync.replicas too
    assert Settings(kafka_replication_factor=3).kafka.min_insync_replicas == 2


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        pytest.param(
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
            },
            "SASL_SSL needs KAFKA_BOOTSTRAP_SERVERS",
            id="security-without-cluster",
        ),
        pytest.param(
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9093", "kafka_security_protocol": "SASL_SSL"},
            "SASL_SSL needs ISA_BROKER_KAFKA_SASL_MECHANISM; SASL_SSL needs "
            "ISA_BROKER_KAFKA_SASL_USERNAME; SASL_SSL needs ISA_BROKER_KAFKA_SASL_PASSWORD_FILE",
            id="sasl-incomplete",
        ),
        pytest.param(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "k:9093",
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
                "kafka_sasl_password_file": "/run/p",
            },
            "not both",
            id="password-twice",
        ),
        pytest.param(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "u",
            },
            "ISA_BROKER_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: use SASL_SSL",
            id="sasl-settings-ignored",
        ),
        pytest.param(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "k:9093",
                "kafka_security_protocol": "SSL",
                "kafka_ssl_cert_file": "/etc/c.pem",
            },
            "ISA_BROKER_KAFKA_SSL_CERT_FILE and ISA_BROKER_KAFKA_SSL_KEY_FILE go together",
            id="cert-without-key",
        ),
        pytest.param(
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "kafka_ssl_ca_file": "/etc/ca.pem"},
            "ISA_BROKER_KAFKA_SSL_* files are given but ISA_BROKER_KAFKA_SECURITY_PROTOCOL is "
            "PLAINTEXT",
            id="tls-files-ignored",
        ),
        pytest.param(
            {"kafka_replication_factor": 2, "kafka_min_insync_replicas": 3},
            "cannot exceed the replication factor (2)",
            id="min-insync-above-replicas",
        ),
        pytest.param(
            {"KAFKA_BOOTSTRAP_SERVERS": "k:9093", "kafka_security_protocol": "TLS"},
            "kafka_security_protocol",
            id="unknown-protocol",
        ),
        pytest.param(
            {
                "KAFKA_BOOTSTRAP_SERVERS": "k:9093",
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "GSSAPI",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
            },
            "kafka_sasl_mechanism",
            id="unsupported-mechanism",
        ),
    ],
)
def test_inconsistent_kafka_security_is_refused_in_any_mode(
    settings: dict[str, object], problem: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**settings)  # type: ignore[arg-type]
    assert problem in str(info.value)


def test_the_sasl_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        {
            **SAFE,
            "ISA_BROKER_KAFKA_SASL_PASSWORD_FILE": None,
            "ISA_BROKER_KAFKA_SASL_PASSWORD": "synthetic-s3cret",
        },
    )
    s = Settings()
    assert s.kafka.sasl_password is not None
    assert "synthetic-s3cret" not in repr(s) and "synthetic-s3cret" not in str(s)
    assert "synthetic-s3cret" not in s.model_dump_json()


def test_production_accepts_a_database_on_a_local_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    _env(
        monkeypatch,
        {**SAFE, "ISA_BROKER_DATABASE_URL": "postgresql+asyncpg://isa@/isa?host=/run/postgresql"},
    )
    assert Settings().store.url is not None


# -- flat names for grouped settings ---------------------------------------------------------


def test_grouped_settings_are_read_from_their_flat_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(
        monkeypatch,
        {
            "isa_broker_kafka_compat": "apache",  # names are case-insensitive
            "ISA_BROKER_KAFKA_BOOTSTRAP_SERVERS": "prefixed:9092",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",  # wins over the prefixed name
            "ISA_BROKER_TOKEN_LEEWAY_SECONDS": "45",
            "ISA_BROKER_ENDPOINT_DISABLE_AFTER_SECONDS": "600",
            "ISA_BROKER_RETENTION_NOTIFY_SECONDS": "0",
            "ISA_BROKER_DATABASE_URL": "sqlite+aiosqlite:///x.db",
        },
    )
    s = Settings()
    assert (s.kafka.compat, s.kafka.bootstrap_servers) == ("apache", "kafka:9092")
    assert s.tokens.leeway_seconds == 45
    assert s.webhooks.endpoint_disable_after_seconds == 600
    assert s.audit.retention_notify_seconds == 0
    assert s.store.url == s.resolved_database_url == "sqlite+aiosqlite:///x.db"


def test_flat_keywords_go_to_their_groups_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, {"ISA_BROKER_KAFKA_COMPAT": "apache", "ISA_BROKER_KAFKA_PARTITIONS": "5"})
    s = Settings(kafka_partitions=7, KAFKA_BOOTSTRAP_SERVERS="k:9092", webhook_allow_http=False)
    assert (s.kafka.compat, s.kafka.partitions) == ("apache", 7)
    assert s.kafka.bootstrap_servers == "k:9092"
    assert s.webhooks.allow_http is False


def test_problems_name_the_flat_variable_and_never_a_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(
        monkeypatch,
        {
            "ISA_BROKER_KAFKA_SECURITY_PROTOCOL": "TLS",
            "ISA_BROKER_KAFKA_SASL_USERNAME": "u" * 300,
            "ISA_BROKER_KAFKA_SASL_PASSWORD": "synthetic-s3cret",
            "ISA_BROKER_WEBHOOK_TIMEOUT_SECONDS": "0",
            "ISA_BROKER_DIP_REMINDER_DAYS": '[7, "soon"]',
            "ISA_BROKER_PORT": "http",
        },
    )
    with pytest.raises(ValidationError) as info:
        Settings()
    message = settings_problems(info.value)
    for expected in (
        "ISA_BROKER_KAFKA_SECURITY_PROTOCOL: Input should be",
        "ISA_BROKER_KAFKA_SASL_USERNAME: String should have at most 255 characters",
        "ISA_BROKER_WEBHOOK_TIMEOUT_SECONDS: Input should be greater than 0",
        "ISA_BROKER_DIP_REMINDER_DAYS_1: Input should be a valid integer",
        "ISA_BROKER_PORT: Input should be a valid integer",
    ):
        assert expected in message
    assert "synthetic-s3cret" not in message and "uuuu" not in message and "soon" not in message


def test_the_settings_table_of_the_operations_guide_lists_every_variable() -> None:
    """One list: docs/operations.md names exactly the variables Settings reads."""
    guide = (REPO_ROOT / "docs" / "operations.md").read_text()
    table = guide.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    documented = {
        name
        for row in table.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`((?:ISA_BROKER_)?[A-Z_]+)`", row.split(" | ")[0])
    }
    read = {variable for s in settings_of(Settings).values() for variable in s.variables}
    assert documented == read
