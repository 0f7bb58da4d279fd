"""The tamper-evident disclosure log.

The ``audit`` table stays the log: business transactions append entries as before, so
exchange never waits for the log. A :class:`~.sealer.Sealer` in the router then *seals*
committed entries in ``seq`` order: it gives each a contiguous ``position``, its RFC 9162
leaf hash (:mod:`.canonical`, :mod:`.merkle`) and a hash chain, and writes checkpoints
signed with the log-signing key (:mod:`.keys`). :func:`~.verify.verify_log` recomputes all of
it and names the first entry altered, removed or inserted; exported checkpoints let a
partner prove later that the log was not rewritten (consistency, RFC 9162 s2.1.4).

    IsaBrokerError
    └── AuditLogError               500  audit_log_error
        └── CheckpointFileInvalid   500  checkpoint_file_invalid   (also a ValueError)
                                         (an exported checkpoints file that cannot be read)
"""

from __future__ import annotations

from ..errors import IsaBrokerError


class AuditLogError(IsaBrokerError):
    """Root of the tamper-evident log's errors."""

    code = "audit_log_error"


class CheckpointFileInvalid(AuditLogError, ValueError):
    code = "checkpoint_file_invalid"
