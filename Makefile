# Two commands a newcomer needs (see README.md): `make demo` and `make test`.
# Both create .venv on first use and install the project with its test extras into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install sandbox bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/acrvpc demo

test: $(STAMP)
	$(BIN)/python -m pytest

sandbox: $(STAMP)
	$(BIN)/acrvpc sandbox

# Every benchmark's --quick variant (docs/benchmarks.md); each prints its figures as a JSON last line.
bench: $(STAMP)
	for b in api_calls overhead fleet webhook_burst trigger; do $(BIN)/python bench/$$b.py --quick || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
