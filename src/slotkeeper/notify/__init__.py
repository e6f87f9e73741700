"""Notifications: what slotkeeper tells an operator's webhook or Slack channel, and when."""
