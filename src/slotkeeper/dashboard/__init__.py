"""The read-only dashboard: what is deployed where, served by the daemon and ``slotkeeper ui``."""
