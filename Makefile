# Entry points on a fresh machine: `make demo` (the main job), `make test` (Tansu, no Java) and
# `make test-kafka` (the Apache Kafka tier: Java 17+ and Maven). All create the virtual environment and install the package into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-kafka lint typecheck clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/sentinel-durable demo

lint: $(BIN)/.installed
	$(BIN)/ruff check sentinel_durable tests examples

typecheck: $(BIN)/.installed
	$(BIN)/mypy --strict sentinel_durable

# Two workers (pytest-xdist): most of the suite's time is spent waiting on brokers and child
# processes, so two halve its wall time on two cores. Each worker starts its own embedded broker.
test: lint typecheck
	$(BIN)/python -m pytest -n 2

# The integration suites (client, CLI, chaos) against one Apache Kafka broker, and the tests
# only Apache Kafka can run (tests/apache_kafka/: restarts, failover, SASL, TLS, ACLs, limits).
KAFKA_SUITES := tests/apache_kafka tests/test_client.py tests/test_cli.py tests/chaos
test-kafka: $(BIN)/.installed
	@command -v java >/dev/null 2>&1 || { echo "make test-kafka: Java 17+ is missing (no java on PATH)"; exit 1; }
	@command -v mvn >/dev/null 2>&1 || { echo "make test-kafka: Maven is missing (no mvn on PATH)"; exit 1; }
	$(BIN)/python -m pytest --broker=apache-kafka $(KAFKA_SUITES)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
