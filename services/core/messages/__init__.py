"""The message types agencies publish. The pydantic models in :mod:`.models` are the source;
the JSON Schemas in ``schemas/`` are generated from them (``isa-broker schemas export``) and a
test keeps the two identical."""

from .registry import MESSAGE_TYPES, MessageType, get_message_type

__all__ = ["MESSAGE_TYPES", "MessageType", "get_message_type"]
