"""The package stands alone: an agency installs it without the broker, so nothing in it may
import the broker's own code."""

from __future__ import annotations

import importlib
import importlib.resources
import pkgutil
import sys

import isa_broker_client


def test_no_module_of_the_broker_is_imported() -> None:
    for module in pkgutil.walk_packages(isa_broker_client.__path__, "isa_broker_client."):
        importlib.import_module(module.name)
    broker = sorted(m for m in sys.modules if m == "services" or m.startswith("services."))
    assert broker == []


def test_the_package_is_typed() -> None:
    assert importlib.resources.files(isa_broker_client).joinpath("py.typed").is_file()
