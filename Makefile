# Two commands do their own set-up on a fresh machine (Python 3.11 + pip):
#   make demo   run the bot against the built-in demo account (dry run: nothing is posted)
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.deps-runtime.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.deps-dev.stamp: requirements.txt requirements-dev.txt $(VENV)/.deps-runtime.stamp
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

demo: $(VENV)/.deps-runtime.stamp
	$(PY) runCostReporting.py --demo --dry-run

test: $(VENV)/.deps-dev.stamp
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.deps-dev.stamp
	$(PY) bench/bench_run.py
	$(PY) bench/bench_history.py

clean:
	rm -rf output .pytest_cache .hypothesis
