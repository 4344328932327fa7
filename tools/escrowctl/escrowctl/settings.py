"""Where escrowctl finds the platform: the same environment variables as the services, plus their URLs."""

from functools import cached_property

from platform_runtime.credentials import Credentials
from platform_runtime.settings import ServiceSettings
from pydantic import SecretStr


class CtlSettings(ServiceSettings):
    """KAFKA_BOOTSTRAP_SERVERS and the KAFKA_SECURITY_* / KAFKA_SASL_* settings of the services, and where each
    service's HTTP API answers (CONTRACTS_URL, ESCROW_URL, BILLING_URL, NOTIFICATIONS_URL), and the read API's
    bearer token (HTTP_TOKEN; unset: the local platform's token of HTTP_PRINCIPAL, admin by default)."""

    database_url: str = ""  # escrowctl never opens a database
    http_port: int = 0
    contracts_url: str = "http://127.0.0.1:8001"
    escrow_url: str = "http://127.0.0.1:8002"
    billing_url: str = "http://127.0.0.1:8003"
    notifications_url: str = "http://127.0.0.1:8004"
    source: str = "escrowctl"  # CloudEvents `source` of the commands it sends
    http_token: SecretStr | None = None
    http_principal: str = "admin"  # whose token deploy/local/credentials.sh gives when HTTP_TOKEN is unset

    @cached_property
    def http_headers(self) -> dict[str, str]:
        if self.http_token is not None:
            return {"Authorization": f"Bearer {self.http_token.get_secret_value()}"}
        return Credentials.local(self.http_principal).http_headers()
    # Whose Kafka credentials deploy/local/credentials.sh gives on a local platform (the operators' by default),
    # unless KAFKA_SASL_USERNAME or KAFKA_SECURITY_PROTOCOL is set (Kubernetes, `credentials.sh --env NAME`).
    kafka_principal: str = "admin"

    @property
    def local_kafka_principal(self) -> str | None:
        explicit = {"kafka_sasl_username", "kafka_security_protocol"} & self.model_fields_set
        return None if explicit else self.kafka_principal

    def url(self, service: str) -> str:
        return getattr(self, f"{service}_url").rstrip("/")
