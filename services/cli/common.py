"""Settings for the commands: read once, checked, and their problems listed without the
values given."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from ..core.errors import InvalidRequest
from ..core.logs import configure as configure_logs
from ..core.settings import DEV_MODE_WARNING, Settings


def load_settings(**overrides: object) -> Settings:
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        raise SystemExit(f"isa-broker: invalid settings: {settings_problems(e)}") from e
    except SettingsError as e:  # a value that cannot be decoded (a JSON list)
        raise SystemExit(f"isa-broker: invalid settings: {e}") from e
    configure_logs(settings.log_level, settings.log_format)
    return settings


def offline_settings() -> Settings:
    """Settings of a command that serves nothing and opens no store (the agreement tools,
    the schema export): dev mode unless ISA_BROKER_MODE says otherwise, since production's
    rules are about what a running broker connects to."""
    mode_set = any(name.upper() == "ISA_BROKER_MODE" for name in os.environ)
    return load_settings() if mode_set else load_settings(mode="dev")


def settings_problems(error: ValidationError) -> str:
    """Each problem as ``VARIABLE: what is wrong``, without the values given (pydantic's own
    text repeats the whole input, passwords included). The variable is the one the operator
    set, whichever group holds the setting (``ISA_BROKER_KAFKA_SASL_PASSWORD`` for an error
    at ``kafka.kafka_sasl_password``)."""
    out = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        variable = Settings.variable_for(tuple(item["loc"]))
        out.append(f"{variable}: {message}" if variable else message)
    return "; ".join(out)


def warn_if_dev(settings: Settings) -> None:
    """A gateway or router in dev mode says so, loudly, before anything else."""
    if settings.mode == "dev":
        bar = "!" * 78
        print(f"{bar}\n!!! {DEV_MODE_WARNING}\n{bar}", file=sys.stderr, flush=True)
        logging.getLogger("isa_broker").warning("%s", DEV_MODE_WARNING)


def read_json_file(option: str, path: str) -> Any:
    """The JSON document in the file an option names; a file that cannot be read or is not
    JSON is refused naming the option and the file (never its content)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InvalidRequest(f"{option} {path}: {e.strerror or e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidRequest(f"{option} {path}: not valid JSON ({e.msg} at line {e.lineno})") from e
