"""slotkeeper: a declarative GitOps reconciler for deployment records and deploy keys."""

__version__ = "0.1.0"
