"""Information Sharing Agreements: the model, the loader that validates the YAML files, and
the engine that decides who may receive which fields of a message."""

from .engine import Decision, Grant, IsaEngine, RecipientDecision
from .loader import load_policies
from .model import Agreement, Flow, Party, PolicySet

__all__ = [
    "Agreement",
    "Decision",
    "Flow",
    "Grant",
    "IsaEngine",
    "Party",
    "PolicySet",
    "RecipientDecision",
    "load_policies",
]
