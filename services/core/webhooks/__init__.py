"""Outbound webhooks signed per the Standard Webhooks specification."""
