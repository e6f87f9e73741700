"""Notifications: messages about transitions, sent to the operator's webhooks and Slack."""
