"""Adapters for the systems that mirror the ledger, one module per API, behind ``base.Target``."""
