# make demo / make test on a fresh machine: the virtualenv, the install and the run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install components demo test lint typecheck unit bench bench-pipeline clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The real components the tests run, cached under ~/.cache/otel-portkey (OTEL_PORTKEY_CACHE) and
# ready before pytest starts: Jaeger v2 and an OpenTelemetry Collector built with Go
# (components/build.sh; measured on a cold 2-core machine: 7-12 minutes, up to 20 under heavy
# load, leaving about 6 GB of Go caches; seconds once cached), the OSS Portkey gateway from npm
# (about 10 s), and Prometheus with promtool from Debian's package (components/install-prometheus.sh:
# apt-get, as root or with sudo, when they are not installed; about 10 s). One line as each of these
# is ready, with its seconds; while Go builds, a line as each of its phases starts and ends and every
# 30 s, then the disk used. Without Go, npm or a way to install Prometheus their tests are skipped,
# unless OTEL_PORTKEY_REQUIRE_REAL=1 (CI), where that fails. `make clean-components` removes it all.
components: install
	@if [ "$$OTEL_PORTKEY_REQUIRE_REAL" = 1 ] || command -v go >/dev/null; then \
	  t0=$$(date +%s); bash components/build.sh >/dev/null || exit 1; \
	  echo "make components: Jaeger and the Collector ready ($$(( $$(date +%s) - t0 )) s)"; \
	else echo "make components: Go not found; the Jaeger and Collector tests will be skipped"; fi
	@if [ "$$OTEL_PORTKEY_REQUIRE_REAL" = 1 ] || command -v npm >/dev/null; then \
	  t0=$$(date +%s); $(BIN)/python -m otel_portkey._peers.oss_gateway >/dev/null || exit 1; \
	  echo "make components: the OSS Portkey gateway (npm) ready ($$(( $$(date +%s) - t0 )) s)"; \
	else echo "make components: npm not found; the gateway tests will be skipped"; fi
	@t0=$$(date +%s); bash components/install-prometheus.sh || exit 1; \
	  echo "make components: Prometheus ready ($$(( $$(date +%s) - t0 )) s)"

# Removes what `make components` keeps in its cache folder (~/.cache/otel-portkey, or
# OTEL_PORTKEY_CACHE) and says how much that freed: components/clean.sh says what, and what it never touches.
.PHONY: clean-components
clean-components:
	@bash components/clean.sh

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

# The unit tests alone (no component, no child process, no network beyond loopback): about a minute.
unit: install
	$(BIN)/pytest -p no:cacheprovider -q -m "unit and not slow"

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

# The Collector pipeline (BENCHMARKS.md, "The Collector pipeline"): spans/s, CPU and queue disk use
# through the single durable Collector and the scale-out tier; about 3 minutes.
bench-pipeline: components
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(OLDEST_VENV) .venv-peers .nox .pytest_cache .mypy_cache .ruff_cache \
		.venv-mutation mutants

# The unit tests (marker `unit`: no component, no child process) on the oldest OpenTelemetry versions
# pyproject.toml allows (constraints-oldest.txt), in a virtualenv of their own; every other package
# as pinned in constraints.txt.
OLDEST_VENV ?= .venv-oldest

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
	$(OLDEST_VENV)/bin/pytest -p no:cacheprovider -q -m unit

# The OTel HTTP client instrumentations' own published test suites (httpx, requests, urllib,
# urllib3, aiohttp-client: their sdists at the versions constraints.txt pins), each run plain and
# under opentelemetry-instrument with the bridge attached, in a virtualenv of their own
# (.venv-peers, made by peers/run.py); any difference in passed/failed/skipped tests fails.
.PHONY: test-peers
test-peers:
	$(PYTHON) peers/run.py

# The unit tests (pytest -m unit) on the other Pythons requires-python claims, one nox session
# each (noxfile.py) in a virtualenv made afresh under .nox; 3.11 runs the whole suite in `make test`.
# On 3.10 the pins are constraints-py310.txt over constraints.txt. Interpreters are found on PATH as
# python3.X, pyenv's own ahead of its shims when pyenv is there; a missing one fails the run.
TEST_PYTHONS ?= 3.10 3.12 3.13
PYENV_BINS = $(foreach v,$(TEST_PYTHONS),$(wildcard $(shell pyenv root 2>/dev/null)/versions/$(v).*/bin))
.PHONY: test-pythons
test-pythons: install
	PATH="$(subst : ,:,$(foreach dir,$(PYENV_BINS),$(dir):))$$PATH" $(BIN)/nox -s unit -p $(TEST_PYTHONS)

# Mutation testing of the pure contract (src/otel_portkey/_contract/, decorated functions included)
# with mutmut 3.8.1 and the contract's own unit tests (pyproject.toml, [tool.mutmut]), in a
# virtualenv of its own (.venv-mutation), from scratch each time (mutants/ is made anew). It prints
# the score per module and the survivors, and fails below 90 % of all mutants killed or 95 % once
# the equivalent mutants listed in mutation/equivalent-mutants.txt are set aside
# (mutation/report.py; mutation/README.md). Not part of .ci/run: about 3-4 minutes on a 2-core machine.
MUTATION_VENV ?= .venv-mutation
$(MUTATION_VENV)/.installed-stamp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(MUTATION_VENV)
	$(MUTATION_VENV)/bin/python -m pip install -q --upgrade pip
	$(MUTATION_VENV)/bin/python -m pip install -q -c constraints.txt -e '.[dev]' mutmut==3.8.1
	touch $@

.PHONY: mutation
mutation: $(MUTATION_VENV)/.installed-stamp
	rm -rf mutants
	$(MUTATION_VENV)/bin/python mutation/mutmut_run.py run
	$(MUTATION_VENV)/bin/python mutation/report.py
