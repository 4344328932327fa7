# syntax=docker/dockerfile:1
# One image for the whole platform: `docker run IMAGE <service> serve|migrate` with service one of contracts,
# escrow, billing, notifications; `notifications.smtp_sink` runs the development SMTP sink; the operator CLI
# is there too (`kubectl exec deploy/contracts -- escrowctl ...`).
# Built with uv from the workspace lock file, so the image runs exactly the versions the tests ran.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install uv==0.13.8
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lock file or a pyproject changes.
COPY pyproject.toml uv.lock ./
COPY schemas/pyproject.toml schemas/
COPY runtime/pyproject.toml runtime/
COPY services/contracts/pyproject.toml services/contracts/
COPY services/escrow/pyproject.toml services/escrow/
COPY services/billing/pyproject.toml services/billing/
COPY services/notifications/pyproject.toml services/notifications/
COPY tools/escrowctl/pyproject.toml tools/escrowctl/
RUN uv sync --frozen --no-dev --no-install-workspace --python /usr/local/bin/python3
COPY schemas/ schemas/
COPY runtime/ runtime/
COPY services/ services/
COPY tools/ tools/
# --no-editable: the workspace packages are installed into the venv, so the runtime stage needs no sources.
RUN uv sync --frozen --no-dev --no-editable --python /usr/local/bin/python3

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 escrow \
    && useradd --system --uid 10001 --gid escrow --home-dir /app --no-create-home --shell /usr/sbin/nologin escrow
COPY --from=build /app/.venv /app/.venv
COPY deploy/local/topics.py /app/deploy/topics.py
WORKDIR /app
# HTTP_HOST 0.0.0.0: probes and Prometheus reach the service from outside the container (127.0.0.1 locally).
# One port for every service inside its container; compose and Kubernetes map it.
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HTTP_HOST=0.0.0.0 HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "platform_runtime.healthcheck"]
ENTRYPOINT ["python", "-m"]
CMD ["contracts", "serve"]
