"""Where escrowctl finds the platform: the same environment variables as the services, plus their URLs."""

from platform_runtime.settings import ServiceSettings


class CtlSettings(ServiceSettings):
    """KAFKA_BOOTSTRAP_SERVERS and the KAFKA_SECURITY_* / KAFKA_SASL_* settings of the services, and where each
    service's HTTP API answers (CONTRACTS_URL, ESCROW_URL, BILLING_URL, NOTIFICATIONS_URL)."""

    database_url: str = ""  # escrowctl never opens a database
    http_port: int = 0
    contracts_url: str = "http://127.0.0.1:8001"
    escrow_url: str = "http://127.0.0.1:8002"
    billing_url: str = "http://127.0.0.1:8003"
    notifications_url: str = "http://127.0.0.1:8004"
    source: str = "escrowctl"  # CloudEvents `source` of the commands it sends

    def url(self, service: str) -> str:
        return getattr(self, f"{service}_url").rstrip("/")
