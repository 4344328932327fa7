"""A local SMTP server that keeps every mail it receives (`python -m notifications.smtp_sink`)."""

from .store import MailStore, read_messages

__all__ = ["MailStore", "read_messages"]
