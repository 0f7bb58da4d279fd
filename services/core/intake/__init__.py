"""Intake: the use-cases by which a sender's message enters the broker, free of HTTP. The
gateway's routes translate a request into one call and its :class:`Accepted` into a 202;
the errors raised are those of :mod:`services.core.errors`, which the gateway renders as
problem+json.

* :func:`accept` an original message (:mod:`.originals`);
* :func:`amend`, :func:`cancel`, :func:`confirm_release`, :func:`record_outcome`: the
  sender's updates to a message it sent (:mod:`.updates`, which lists their own steps).

An original is taken in by these steps, in order:

1. Validate the body against its message type's model (422 ``ValidationFailed``).
2. Idempotency (:mod:`.accepted`): hash the request (type, purposes, payload); forget the
   client's Idempotency-Key once it has expired; a request already made under the key is
   answered again with what it stored (``replayed``), another request under it is refused
   (409 ``IdempotencyKeyReused``).
3. Pseudonymise the person: the keyed pseudonym of the first identifier the message carries
   (PNC id, CRN, prison number) keys it on Kafka and in the store. An update keeps its
   root's, so that it reaches each recipient after what it updates.
4. Decide under the agreements (:meth:`IsaEngine.decide
   <services.core.isa.engine.IsaEngine.decide>`); a cancellation's decision is built from the
   versions before it instead. A refusal is written to the disclosure log (``refused``) and
   raised (403 ``SharingRefused``).
5. Pseudonymise every identifier of the person, so that subject access finds the message by
   any of them.
6. Timeliness: the notice period of a release notice (with an update's lifecycle facts) and
   the priority lane (a recall of a person unlawfully at large goes first).
7. Store the message, its decision, its outbox row and its disclosure-log entry in one
   transaction; an update also moves its root to its new state and version, only if
   neither changed since it was read. A concurrent request under the same Idempotency-Key
   that won the race is answered instead (step 2's replay).
8. Wake the outbox relay, so that it publishes at once rather than at its next poll; the
   router then routes the message to each recipient.
9. Answer :class:`Accepted`: the ids, the lifecycle, the version and the decision.
"""

from __future__ import annotations

from .accepted import Accepted
from .originals import Wake, accept, person_identifier
from .updates import amend, cancel, confirm_release, not_found, record_outcome, resolve_root

__all__ = [
    "Accepted",
    "Wake",
    "accept",
    "amend",
    "cancel",
    "confirm_release",
    "not_found",
    "person_identifier",
    "record_outcome",
    "resolve_root",
]
