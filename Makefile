# The two commands of the README. Both are idempotent: the virtualenv is (re)built only when the
# packaging files change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup bench clean

$(STAMP): setup.cfg pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -e ".[test,plot]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) cli.py demo --out demo_out

# 2 worker processes (CI's 2 cores; tests/conftest.py puts the slow tests first and one torch thread per worker)
test: $(STAMP)
	$(PY) -m pytest -q -m "not gpu" -n 2 --dist worksteal

bench: $(STAMP)
	$(PY) cli.py bench all

clean:
	rm -rf $(VENV) demo_out .pytest_cache
