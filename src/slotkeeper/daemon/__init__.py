"""``slotkeeper run``: the reconcile loop (``loop``) and its collaborators, one module each.

What the CLI and the tests import is re-exported here.
"""

from slotkeeper.daemon.loop import Daemon, install_signal_handlers
from slotkeeper.daemon.settings import DaemonSettings
from slotkeeper.daemon.status import LastReconcile
from slotkeeper.daemon.webhook import (
    MAX_BODY,
    MAX_JSON_DEPTH,
    REPLAY_WINDOW,
    WebhookReceiver,
    delivery_keys,
)
from slotkeeper.web.app import ENDPOINTS

__all__ = [
    "ENDPOINTS",
    "MAX_BODY",
    "MAX_JSON_DEPTH",
    "REPLAY_WINDOW",
    "Daemon",
    "DaemonSettings",
    "LastReconcile",
    "WebhookReceiver",
    "delivery_keys",
    "install_signal_handlers",
]
