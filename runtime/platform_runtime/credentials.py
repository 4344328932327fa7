"""A client's credentials, as `deploy/local/credentials.sh NAME` prints them (librdkafka-style `key=value` lines).

The demo, the tests, the benchmark and escrowctl talk to the platform as one principal each (integrator, admin,
analytics…); this turns those lines into aiokafka's keyword arguments and the read API's Authorization header.
"""

from __future__ import annotations

import logging
import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

ROOT = Path(__file__).resolve().parents[2]


def _not_plain_in_the_clear(record: logging.LogRecord) -> bool:
    return record.getMessage() != "Sending username and password in the clear"
LOCAL_SCRIPT = ROOT / "deploy" / "local" / "credentials.sh"


@dataclass(frozen=True)
class Credentials:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    http_token: str | None = None

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials({self.sasl_username!r} at {self.bootstrap_servers}, {self.security_protocol})"

    @classmethod
    def parse(cls, text: str) -> Credentials:
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
        return cls(
            bootstrap_servers=values["bootstrap.servers"],
            security_protocol=values.get("security.protocol", "PLAINTEXT"),
            sasl_mechanism=values.get("sasl.mechanism"),
            sasl_username=values.get("sasl.username"),
            sasl_password=values.get("sasl.password"),
            ssl_ca_location=values.get("ssl.ca.location"),
            http_token=values.get("http.token"),
        )

    @classmethod
    def local(cls, name: str, env: dict[str, str] | None = None) -> Credentials:
        """NAME's credentials on the local platform (or the one the environment names: KAFKA_BOOTSTRAP_SERVERS,
        ESCROW_WORK…); the secrets are made at first use."""
        done = subprocess.run([str(LOCAL_SCRIPT), name], capture_output=True, text=True, check=False,
                              env=env if env is not None else os.environ.copy(), stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"credentials.sh {name} failed ({done.returncode}): {done.stderr.strip()}")
        return cls.parse(done.stdout)

    def kafka_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client (bootstrap included)."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.security_options()}

    def security_options(self) -> dict[str, Any]:
        """The same without bootstrap_servers (as kafka_security.client_options gives them to the runtime)."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = create_ssl_context(cafile=self.ssl_ca_location)
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism == "PLAIN":  # the local super user, on 127.0.0.1 only (kafka-local.sh): said once
                logging.getLogger("aiokafka.conn").addFilter(_not_plain_in_the_clear)
            options |= {"sasl_mechanism": self.sasl_mechanism, "sasl_plain_username": self.sasl_username,
                        "sasl_plain_password": self.sasl_password}
        return options

    def service_env(self) -> dict[str, str]:
        """The environment variables a service (ServiceSettings) or escrowctl reads to connect as this principal."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers, "KAFKA_SECURITY_PROTOCOL": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            env |= {"KAFKA_SASL_MECHANISM": self.sasl_mechanism or "SCRAM-SHA-512",
                    "KAFKA_SASL_USERNAME": self.sasl_username or "", "KAFKA_SASL_PASSWORD": self.sasl_password or ""}
        if self.ssl_ca_location:
            env["KAFKA_SSL_CAFILE"] = self.ssl_ca_location
        return env

    def http_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.http_token}"} if self.http_token else {}


async def connect_admin(kafka: dict[str, Any], deadline: float) -> AIOKafkaAdminClient:
    """A started admin client with aiokafka options `kafka`, retried each second until `deadline` (time.monotonic()):
    the setup scripts run while a broker may still be starting."""
    while True:
        admin = AIOKafkaAdminClient(**kafka, request_timeout_ms=15000)
        try:
            await admin.start()
            return admin
        except KafkaError:
            await admin.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
