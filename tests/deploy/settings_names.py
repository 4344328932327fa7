"""The environment variables each service reads: its settings class's fields, upper-cased (pydantic-settings).

A misspelt variable in compose or a manifest would be ignored silently (extra="ignore"), so the deploy tests
check every name they hand a service against these.
"""

from billing.settings import BillingSettings
from contracts.settings import ContractsSettings
from escrow.bootstrap import EscrowSettings
from notifications.settings import NotificationsSettings

SETTINGS = {"contracts": ContractsSettings, "escrow": EscrowSettings, "billing": BillingSettings,
            "notifications": NotificationsSettings}


def variables(service: str) -> set[str]:
    return {name.upper() for name in SETTINGS[service].model_fields}


def unknown(service: str, names) -> set[str]:
    """The names the service would not read. <X>_USER/<X>_PASSWORD only build a URL inside the pod ($(VAR))."""
    helpers = {n for n in names if n.endswith(("_USER", "_PASSWORD")) and n.rsplit("_", 1)[0] + "_URL" in names}
    return set(names) - variables(service) - helpers
