# The two Quick start commands are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench lint ci setup clean pip-audit

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

## Set up and run web, worker and scheduler on the embedded default.
run: $(STAMP)
	$(PY) scripts/run.py

## The whole suite: on PostgreSQL + Redis + S3, then on the embedded default.
test: $(STAMP)
	$(PY) scripts/test.py $(ARGS)

## Benchmarks: a table on stdout and JSON under bench/results/.
bench: $(STAMP)
	$(PY) bench/run.py $(ARGS)

## Known vulnerabilities of the pinned requirements, for the compliance
## control "dependencies-vulnerabilities" (KREO_VAR_DIR, default var/). It
## needs an advisory source (PyPI's JSON API or OSV): where none answers,
## pip-audit skips every package and the control says "not checked".
pip-audit: $(STAMP)
	mkdir -p $${KREO_VAR_DIR:-var}/compliance
	$(VENV)/bin/pip-audit -s pypi -r requirements.txt --no-deps --disable-pip \
		-f json -o $${KREO_VAR_DIR:-var}/compliance/pip-audit.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/bandit -q -c pyproject.toml -r kreo accounts projects audit backups privacy monitoring status compliance tools
	$(VENV)/bin/bandit -q -c pyproject.toml -s B404,B603,B607 -r scripts bench .ci

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) var staticfiles node_modules
