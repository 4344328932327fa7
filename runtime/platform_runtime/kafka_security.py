"""How a service authenticates to Kafka: PLAINTEXT on a developer's broker, SCRAM-SHA-512 over TLS on Strimzi.

Every Kafka client a service opens takes its options from here, so a KafkaUser's credentials reach all of them.
"""

from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from .settings import ServiceSettings

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def _ssl_context(settings: ServiceSettings):
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(cafile=settings.kafka_ssl_cafile)


def client_options(settings: ServiceSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producer, consumer and admin client."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if (context := _ssl_context(settings)) is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        options |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                    "sasl_plain_username": settings.kafka_sasl_username,
                    "sasl_plain_password": settings.kafka_sasl_password.get_secret_value()
                    if settings.kafka_sasl_password else None}
    return options


def broker_security(settings: ServiceSettings) -> BaseSecurity | None:
    """The same, for faststream's KafkaBroker."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = _ssl_context(settings)
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    return _SASL[settings.kafka_sasl_mechanism](settings.kafka_sasl_username or "", password,
                                               ssl_context=context, use_ssl=protocol == "SASL_SSL")
