# Two entry points on a fresh machine: `make demo` (the main job) and `make test`.
# Both create the virtual environment and install the package into it first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck clean

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

test: lint typecheck
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
