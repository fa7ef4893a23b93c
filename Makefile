# make demo / make test on a fresh machine: the virtualenv, the install and the run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install components demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The real components the tests run, cached under ~/.cache/otel-portkey and ready before pytest
# starts: Jaeger v2 and an OpenTelemetry Collector built with Go (8-12 minutes on a cold 2-core
# machine, progress every 30 s; seconds once cached) and the OSS Portkey gateway from npm. Without
# Go or npm their tests are skipped, unless OTEL_PORTKEY_REQUIRE_REAL=1 (CI), where that fails.
components: install
	@if [ "$$OTEL_PORTKEY_REQUIRE_REAL" = 1 ] || command -v go >/dev/null; then \
	  bash components/build.sh >/dev/null; \
	else echo "make components: Go not found; the Jaeger and Collector tests will be skipped"; fi
	@if [ "$$OTEL_PORTKEY_REQUIRE_REAL" = 1 ] || command -v npm >/dev/null; then \
	  $(BIN)/python -m otel_portkey.testing.gateway >/dev/null; \
	else echo "make components: npm not found; the gateway tests will be skipped"; fi

demo: install
	$(BIN)/otel-portkey demo

lint: install
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

typecheck: install
	$(BIN)/mypy

# Coverage of src/otel_portkey, child processes included (the demo, the examples under
# opentelemetry-instrument); the run fails below 90 %.
test: lint typecheck components
	$(BIN)/pytest --cov=otel_portkey --cov-report=term --cov-fail-under=90

# Benchmarks, with the peers' instrumentations in a virtualenv of their own (OpenLLMetry's openai
# instrumentation registers an `openai` entry point that would clash with the GenAI one in .venv).
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed-stamp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -c constraints.txt -e '.[dev,bench]'
	touch $@

bench: $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(OLDEST_VENV) .pytest_cache .mypy_cache .ruff_cache

# The in-process tests on the oldest OpenTelemetry versions pyproject.toml allows
# (constraints-oldest.txt), in a virtualenv of their own; every other package as pinned in
# constraints.txt. No Node gateway, Go components or opentelemetry-instrument child processes.
OLDEST_VENV ?= .venv-oldest
IN_PROCESS_TESTS := \
	tests/test_config.py tests/test_context.py tests/test_composition.py tests/test_exporter.py \
	tests/test_feedback.py tests/test_header_layouts.py tests/test_headers.py tests/test_hooks.py \
	tests/test_hostile_input.py tests/test_ids.py tests/test_metadata.py tests/test_processor.py \
	tests/test_streaming.py tests/test_client_hooks.py tests/test_propagation.py tests/test_baggage_trust.py \
	tests/test_gateway_reading.py tests/test_demo.py tests/test_clients.py tests/test_compat_table.py \
	tests/test_faults.py::test_gateway_refused \
	tests/test_faults.py::test_malformed_gateway_headers \
	tests/test_faults.py::test_an_otlp_endpoint_that_hangs_does_not_hold_the_app_and_drops_are_counted \
	tests/test_load.py::test_100000_sequential_calls_keep_memory_and_registries_bounded \
	tests/test_metadata_bridge.py::test_policy_from_the_environment \
	tests/test_metadata_bridge.py::test_an_invalid_caller_metadata_header_is_sent_untouched \
	tests/test_metadata_bridge.py::test_no_metadata_anywhere_means_no_header_and_no_attribute \
	tests/test_metadata_bridge.py::test_jaeger_back_link_and_trace_url \
	tests/test_metadata_bridge.py::test_a_jaeger_link_longer_than_128_characters_is_not_sent \
	tests/test_cli.py::test_demo_without_its_extra_is_one_sentence \
	tests/test_cli.py::test_doctor_names_each_problem_with_a_fix \
	tests/test_cli.py::test_demo_checks_every_module_before_starting_anything

$(OLDEST_VENV)/.installed-stamp: pyproject.toml constraints.txt constraints-oldest.txt
	rm -rf $(OLDEST_VENV)
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1==/p' constraints-oldest.txt \
		| grep -v -i -F -f - constraints.txt > $(OLDEST_VENV)/constraints-rest.txt
	$(OLDEST_VENV)/bin/python -m pip install -q -c constraints-oldest.txt \
		-c $(OLDEST_VENV)/constraints-rest.txt -e '.[dev]'
	$(OLDEST_VENV)/bin/python -m pip check
	touch $@

.PHONY: test-oldest
test-oldest: $(OLDEST_VENV)/.installed-stamp
	$(OLDEST_VENV)/bin/python -m pip list 2>/dev/null | grep -E '^opentelemetry-(api|sdk|instrumentation|instrumentation-httpx|exporter-otlp-proto-http) '
	$(OLDEST_VENV)/bin/pytest -p no:cacheprovider $(IN_PROCESS_TESTS)

# The OTel HTTP client instrumentations' own published test suites (httpx, requests, urllib,
# urllib3, aiohttp-client: their sdists at the versions constraints.txt pins), each run plain and
# under opentelemetry-instrument with the bridge attached, in a virtualenv of their own
# (.venv-peers, made by peers/run.py); any difference in passed/failed/skipped tests fails.
.PHONY: test-peers
test-peers:
	$(PYTHON) peers/run.py
