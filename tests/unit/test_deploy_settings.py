"""What a container or a Kubernetes pod sets in the environment reaches the HTTP server and every Kafka client."""

import ssl

import pytest
from faststream.security import SASLScram512

from platform_runtime.kafka_security import broker_security, client_options
from platform_runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit


def settings(monkeypatch, **env: str) -> ServiceSettings:
    for name in ("HTTP_HOST", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ServiceSettings(database_url="postgresql+asyncpg://x@db/x", http_port=8080)


def test_the_http_server_listens_on_localhost_unless_told_otherwise(monkeypatch):
    assert settings(monkeypatch).http_host == "127.0.0.1"
    assert settings(monkeypatch, HTTP_HOST="0.0.0.0").http_host == "0.0.0.0"


def test_a_local_broker_takes_plaintext_and_no_credentials(monkeypatch):
    local = settings(monkeypatch)
    assert client_options(local) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(local) is None


def test_a_strimzi_kafka_user_signs_in_with_scram_over_tls(monkeypatch):
    pod = settings(monkeypatch, KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                   KAFKA_SASL_USERNAME="contracts", KAFKA_SASL_PASSWORD="s3cret")
    options = client_options(pod)
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "contracts", "s3cret")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    security = broker_security(pod)
    assert isinstance(security, SASLScram512) and security.use_ssl
    assert "s3cret" not in repr(pod)  # the password is a SecretStr: never in a log line


def test_an_unknown_security_protocol_is_refused(monkeypatch):
    with pytest.raises(ValueError):
        settings(monkeypatch, KAFKA_SECURITY_PROTOCOL="SASL_TLS")


def test_the_image_healthcheck_answers_by_the_service_s_health_endpoint(monkeypatch):
    import http.server
    import socket
    import threading

    from platform_runtime import healthcheck

    class Live(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            self.send_response(200 if self.path == "/health/live" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Live)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HEALTHCHECK_URL", raising=False)
        monkeypatch.setenv("HTTP_PORT", str(server.server_port))
        assert healthcheck.main() == 0
        monkeypatch.setenv("HEALTHCHECK_URL", f"http://127.0.0.1:{server.server_port}/elsewhere")
        assert healthcheck.main() == 1
    finally:
        server.shutdown()
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HEALTHCHECK_URL", f"http://127.0.0.1:{closed.getsockname()[1]}/health/live")
        assert healthcheck.main() == 1
