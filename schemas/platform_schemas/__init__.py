"""The platform's wire contract: CloudEvents envelope and the models of every command and event."""

from .envelope import CONTENT_TYPE, Envelope, dataschema_of, from_kafka, new_envelope, parse_dataschema
from .types import Amount, Currency, Id, Message, Posting

__all__ = [
    "CONTENT_TYPE", "Envelope", "dataschema_of", "from_kafka", "new_envelope", "parse_dataschema",
    "Amount", "Currency", "Id", "Message", "Posting",
]
