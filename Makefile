# The two commands of the quick start: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-quick deps bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

deps:
	bash scripts/install-debian-deps.sh

run: $(STAMP)
	$(VENV)/bin/threatlab run --all --out threatlab-out

test: $(STAMP) deps
	$(PY) -m pytest

# The quick loop: everything but the live and slow tests.
test-quick: $(STAMP)
	$(PY) -m pytest -m 'not live and not slow'

bench: $(STAMP) deps
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) threatlab-out build src/*.egg-info
