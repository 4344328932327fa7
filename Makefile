# Local platform: PostgreSQL and Kafka from deploy/local/, the four services as background processes.
# Ports, URLs and work dirs: deploy/local/env.sh. Every target is re-runnable and fast when already done.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.NOTPARALLEL:
.DEFAULT_GOAL := help

PY := .venv/bin/python
LOCAL := deploy/local
KAFKA := $(LOCAL)/kafka/kafka-local.sh
# pip may put uv where PATH (pyenv shims) does not see it yet; `python3 -m uv` always works
DEMO ?= deploy/demo.py
UV := $(shell command -v uv || echo python3 -m uv)

.PHONY: help bootstrap infra-up infra-down migrate up down status demo test test-tls bench bench-capacity bench-pairs schemas reset deploy-check fuzz chaos chaos-short

help:
	@echo "make bootstrap|infra-up|infra-down|migrate|up|down|status|demo|test|test-tls|bench|bench-capacity|bench-pairs|schemas|reset|deploy-check|fuzz|chaos|chaos-short"
	echo "  PYTEST_ARGS='-m unit' make test;  AUTO_RELEASE_AFTER=PT5S make up"

bootstrap:
	command -v uv >/dev/null || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv==0.13.8
	# Bytecode compiled once at install: this machine sets PYTHONDONTWRITEBYTECODE, and every service start would
	# otherwise compile ~1,000 modules from source.
	if [[ -f uv.lock ]]; then $(UV) sync --frozen --compile-bytecode; else $(UV) sync --compile-bytecode; fi
	$(LOCAL)/postgres.sh install
	$(KAFKA) install
	# kustomize and promtool for tests/deploy, once per machine (outside the work tree; see the script)
	deploy/tools/install.sh >/dev/null

infra-up: bootstrap
	$(LOCAL)/postgres.sh start
	$(KAFKA) start
	$(PY) $(LOCAL)/topics.py

infra-down:
	$(KAFKA) stop
	$(LOCAL)/postgres.sh stop

migrate: bootstrap
	source $(LOCAL)/env.sh
	for s in "$${SERVICES[@]}"; do (service_env "$$s"; migration_env "$$s"; echo "migrate $$s"; $(PY) -m "$$s" migrate); done

up: infra-up migrate
	$(LOCAL)/services.sh start

down:
	$(LOCAL)/services.sh stop
	$(KAFKA) stop
	$(LOCAL)/postgres.sh stop
	$(LOCAL)/test-servers.sh stop

status:
	$(LOCAL)/postgres.sh status || true
	echo "kafka $$($(KAFKA) status || true)"
	$(LOCAL)/services.sh status || true
	echo "test servers: $$($(LOCAL)/test-servers.sh status || true)"

# Stops, whatever happens, the services and the servers that it started itself (not those already running).
demo:
	$(LOCAL)/postgres.sh status >/dev/null && pg_was_up=1 || pg_was_up=
	$(KAFKA) status >/dev/null && kafka_was_up=1 || kafka_was_up=
	cleanup() {
	  $(LOCAL)/services.sh stop || true
	  [[ -n $$kafka_was_up ]] || $(KAFKA) stop || true
	  [[ -n $$pg_was_up ]] || $(LOCAL)/postgres.sh stop || true
	}
	trap cleanup EXIT
	# The story includes an auto-release and earnings becoming available: short periods unless the caller chose.
	export AUTO_RELEASE_AFTER=$${AUTO_RELEASE_AFTER:-PT5S} REVIEW_REMINDER_BEFORE=$${REVIEW_REMINDER_BEFORE:-PT2S}
	export EARNINGS_PENDING_FOR=$${EARNINGS_PENDING_FOR:-PT8S}
	$(MAKE) --no-print-directory up
	$(PY) $(DEMO)

# On servers of its own (deploy/local/test-servers.sh), wiped and started fresh at every run: what the platform's
# broker and databases hold, and a `make up` platform running on them, change nothing. In CI (CI=true) they are
# stopped at the end; a developer's stay up (eval the output of `deploy/local/test-servers.sh env` to run pytest on them).
# TEST_HISTORY_EVENTS: earlier events put on the topics before the platform starts (tests/support/history.py).
test: bootstrap
	if [[ -n $${CI:-} && $${CI:-} != false ]]; then trap '$(LOCAL)/test-servers.sh stop' EXIT; fi
	$(LOCAL)/test-servers.sh fresh
	eval "$$($(LOCAL)/test-servers.sh env)"
	export TEST_HISTORY_EVENTS=$${TEST_HISTORY_EVENTS:-100000}
	# Each run's output is kept too, so that the failures can be named again at the very end: CI shows only the tail.
	log=$$(mktemp -t make-test.XXXXXX)
	rc=0; $(PY) -m pytest tests $(PYTEST_ARGS) | tee "$$log" || rc=$$?
	if ((rc == 5)); then rm -f "$$log"; echo "make test: pytest ran no tests" >&2; exit 1; fi
	# Then the short chaos run (marker chaos: TEST_CHAOS_SAGAS sagas of each kind under kills and restarts, and a
	# broker restart under running services), on its own because it restarts these test servers. It runs with the
	# whole suite (no PYTEST_ARGS) unless TEST_CHAOS_SAGAS=0; with PYTEST_ARGS only if TEST_CHAOS_SAGAS is set.
	chaos=$${TEST_CHAOS_SAGAS:-$(if $(PYTEST_ARGS),0,10)}
	if ((chaos > 0)); then CHAOS_SAGAS=$$chaos $(PY) -m pytest tests/e2e/test_chaos.py -m chaos -s | tee -a "$$log" || rc=$$?; fi
	if ((rc != 0)); then printf "\nmake test failed (exit $$rc); what failed:\n"; grep -aE '^(FAILED|ERROR) ' "$$log" | cut -c1-400 || true; fi
	rm -f "$$log"
	exit $$rc

# The Kafka clients over TLS (SASL_SSL, the local CA of kafka-local.sh): the ACL matrix, the broker smoke test and
# the fund saga end to end (the services' producers and consumers), on fresh test servers like `make test`.
test-tls: bootstrap
	if [[ -n $${CI:-} && $${CI:-} != false ]]; then trap '$(LOCAL)/test-servers.sh stop' EXIT; fi
	export KAFKA_SECURITY_PROTOCOL=SASL_SSL
	$(LOCAL)/test-servers.sh fresh
	eval "$$($(LOCAL)/test-servers.sh env)"
	$(PY) -m pytest tests/integration/test_kafka_acls.py tests/test_infra_smoke.py tests/e2e/test_fund_saga.py $(PYTEST_ARGS)

# 10,000 generated and mutated commands through real Kafka (the default suite sends 300 of them).
# On the test servers, fresh, like `make test` (a `make up` platform keeps running).
fuzz: bootstrap
	$(LOCAL)/test-servers.sh fresh
	eval "$$($(LOCAL)/test-servers.sh env)"
	FUZZ_COMMANDS=$${FUZZ_COMMANDS:-10000} $(PY) -m pytest tests/e2e/test_fuzz.py -m fuzz -s $(PYTEST_ARGS)

# Sagas of every kind under SIGKILLs of each service and one PostgreSQL and one broker restart (CHAOS_SAGAS
# of each kind; chaos-short: 25), then a broker restart under running services. On the platform's servers, which
# it restarts: run it on its own. `make test` runs it too, with 10, on the test servers.
chaos: infra-up migrate
	$(LOCAL)/services.sh stop >/dev/null || true
	# On the platform's servers (those infra-up started), both named, so the run restarts only them
	source $(LOCAL)/env.sh; export POSTGRES_URL=$$($(LOCAL)/postgres.sh url)
	CHAOS_SAGAS=$${CHAOS_SAGAS:-1000} $(PY) -m pytest tests/e2e/test_chaos.py -m chaos -s $(PYTEST_ARGS)

chaos-short: infra-up migrate
	$(LOCAL)/services.sh stop >/dev/null || true
	# On the platform's servers (those infra-up started), both named, so the run restarts only them
	source $(LOCAL)/env.sh; export POSTGRES_URL=$$($(LOCAL)/postgres.sh url)
	CHAOS_SAGAS=$${CHAOS_SAGAS:-25} $(PY) -m pytest tests/e2e/test_chaos.py -m chaos -s $(PYTEST_ARGS)

bench: infra-up migrate
	$(PY) -m bench $(BENCH_ARGS)

# Up to what offered rate the p99 stays within 100 ms on this machine (what to size for): the fund saga's latency at
# each rate, one platform, no burst; the floor of the same run beside it. CAPACITY_RATES in any order.
CAPACITY_RATES ?= 30,40,45,50,55,60,70
bench-capacity: infra-up migrate
	$(PY) -m bench --only fund --rates $(CAPACITY_RATES) --latency-duration 30 --burst 0 --hops-seconds 0 $(BENCH_ARGS)

# Two settings compared in alternated runs (A B, B A, ...) of the benchmark's short form: each figure per run, as
# B / A per pair, and the median ratio (bench/pairs.py). E.g. make bench-pairs PAIR_B="--service-env KEY=VALUE";
# PAIRS_ARGS for the rest (e.g. --run "..." for other runs than the default short ones).
PAIRS ?= 4
bench-pairs: infra-up migrate
	$(PY) -m bench.pairs --pairs $(PAIRS) --a="$(PAIR_A)" --b="$(PAIR_B)" $(PAIRS_ARGS)

schemas: bootstrap
	$(PY) -m platform_schemas.generate

reset: down
	source $(LOCAL)/env.sh
	rm -rf "$$ESCROW_WORK"

# Dockerfile, compose, Kubernetes manifests and alert rules, checked offline (also part of `make test`).
deploy-check: bootstrap
	$(PY) -m pytest tests/deploy -q
