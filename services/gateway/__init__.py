"""The gateway: OAuth 2.0 authorization server for agencies, message intake, subscriptions."""
