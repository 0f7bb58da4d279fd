"""The OAuth scopes of the API: what each allows, and the least-privilege set a party's
client is granted by default, derived from the agreements (what it may send, what it
receives, which duties it holds). The gateway checks them; the CLI and the admin API grant
them (:mod:`services.core.clients`)."""

from __future__ import annotations

from .isa.model import PolicySet
from .messages import MESSAGE_TYPES

#: Information governance officers: read any decision and the whole disclosure log. Never
#: granted by default.
IG_AUDIT_SCOPE = "ig:audit"
#: Operators: register and disable clients, rotate the token-signing key. Never granted by
#: default.
ADMIN_SCOPE = "admin"

#: What each scope allows (the OpenAPI document and docs/security.md show this table).
SCOPE_DESCRIPTIONS = {
    "subscriptions:manage": "create, list, enable, delete own subscriptions; set their "
    "filters and cohort watch-lists; rotate their webhook secrets; replay own dead letters",
    "deliveries:read": "read own deliveries, dead letters and delivery latency",
    "inbox:read": "read own inbox (messages and notices)",
    "inbox:ack": "acknowledge own inbox up to a cursor",
    "decisions:read": "read the decisions on messages the party sent",
    "audit:read": "read the disclosure-log entries where the party acted or received",
    "messages:read": "read the state and history of messages the party sent (full) or "
    "received (its own projection of each version), and list its own messages",
    "reports:read": "read the timeliness report of the messages the party sent",
    "duties:read": "read the acknowledgement duties the party holds, set as sender, or is "
    "an escalation party of, and the DIP breaches it sent or received",
    "duties:ack": "acknowledge the party's own acknowledgement duties",
    IG_AUDIT_SCOPE: "read any decision and the whole disclosure log (IG officers)",
    ADMIN_SCOPE: "register and disable clients, rotate the token-signing key (operators)",
}

SCOPE_DESCRIPTIONS.update(
    {
        f"publish:{name}": f"publish {name} messages (as the agreements allow)"
        for name in MESSAGE_TYPES
    }
)
ALL_SCOPES = sorted(SCOPE_DESCRIPTIONS)


def default_scopes(policies: PolicySet, party: str) -> list[str]:
    """Least privilege: publish scopes only for the message types the agreements let this
    party send; subscription and delivery scopes only if it is a recipient somewhere."""
    # every party may read the state of what it sent or received (GET /v1/messages)
    scopes: set[str] = {"messages:read"}
    for agreement in policies.agreements:
        for flow in agreement.flows:
            if party in flow.senders:
                scopes.update(f"publish:{mt}" for mt in flow.message_types)
                # senders are told on their inbox when a recipient's endpoint is disabled
                scopes.update({"decisions:read", "inbox:read", "inbox:ack", "reports:read"})
            if party in flow.recipients:
                scopes.update(
                    {"subscriptions:manage", "deliveries:read", "inbox:read", "inbox:ack"}
                )
            # acknowledgement duties (services.core.timeliness.duties): the recipients
            # acknowledge; senders and escalation parties follow them; the parties of a
            # DIP breach follow its deadline
            if flow.duty is not None:
                if party in flow.recipients:
                    scopes.update({"duties:read", "duties:ack"})
                if party in flow.senders or party in flow.duty.escalate_to:
                    # escalations reach a party without a subscription on its inbox
                    scopes.update({"duties:read", "inbox:read", "inbox:ack"})
            if "dip-breach" in flow.message_types and (
                party in flow.senders or party in flow.recipients
            ):
                scopes.add("duties:read")
    return sorted(scopes)
