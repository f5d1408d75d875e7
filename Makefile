# Two commands a newcomer needs (see README.md): `make demo` and `make test`.
# Both create .venv on first use and install the project with its test extras into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install sandbox clean

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

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
