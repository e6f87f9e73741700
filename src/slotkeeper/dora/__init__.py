"""Delivery (DORA) metrics computed from the ledger: what slotkeeper records, measured."""
