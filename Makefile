# Two commands a newcomer needs (see README.md): `make demo` and `make test` (`make lint` before a commit).
# They create .venv on first use and install the project with its test and lint extras into it, at the
# versions pinned in constraints.txt (what CI tested); `make lock` re-pins them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONSTRAINTS := constraints.txt
# Two phases: everything but the end-to-end tests spread over pytest-xdist workers (each module on
# one worker, in order), then the e2e tests one at a time: they start servers, workers and hosts
# whose heartbeats and browser timeouts must not compete with another e2e test for the 2 cores.
JOBS   ?= 2
PYTEST := $(BIN)/python -m pytest --durations=25
FAST   := -n $(JOBS) --dist loadfile

.PHONY: demo ui test test-fast lint install lock sandbox bench clean

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[test,lint,s3]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/acrvpc demo
	@echo "Next: source $(VENV)/bin/activate   (then acrvpc ... and prefect ... work as the README writes them)"

# The Prefect UI on the demo's runs (the default PREFECT_HOME), at http://127.0.0.1:4200
ui: $(STAMP)
	$(BIN)/prefect server start

# The whole suite: unit, contract, fuzz, sandbox integration and Prefect end-to-end tests.
test: $(STAMP)
	$(PYTEST) $(FAST) -m "not e2e"
	$(PYTEST) -m e2e

# The inner loop: everything but the soak and multi-host end-to-end tests.
test-fast: $(STAMP)
	$(PYTEST) $(FAST) -m "not e2e"
	$(PYTEST) -m "e2e and not soak and not multihost"

# Lint and type-check (pyproject.toml's [tool.ruff] and [tool.mypy]); `ruff format .` and
# `ruff check --fix .` repair most of what the first two report.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Re-pin every dependency to the newest versions pyproject.toml allows (commit constraints.txt after).
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e ".[test,lint,s3]"
	{ echo "# Pinned by 'make lock' ($(shell $(PYTHON) --version)); make installs with -c constraints.txt."; \
	  .lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -vE '^(acr-vpc-build|setuptools|wheel)=='; } > $(CONSTRAINTS)
	rm -rf .lock-venv

sandbox: $(STAMP)
	$(BIN)/acrvpc sandbox

# Every benchmark's --quick variant (docs/benchmarks.md); each prints its figures as a JSON last line.
bench: $(STAMP)
	for b in api_calls overhead fleet webhook_burst trigger; do $(BIN)/python bench/$$b.py --quick || exit 1; done

clean:
	rm -rf $(VENV) .lock-venv .pytest_cache .mypy_cache .ruff_cache build *.egg-info
