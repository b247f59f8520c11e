# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench mutation vm clean conformance

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fido-emu demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

# the SoloKeys conformance suite against `fido-emu run --transport udp` (also run by `make test`
# through tests/conformance/test_conformance.py); suite from $FIDO_EMU_CONFORMANCE_SUITE or
# ../shared/third_party/fido2-tests
conformance: $(STAMP)
	$(BIN)/python tests/conformance/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python tools/bench/run.py

# Not part of `make test`: the nine known breakages must each turn the tests red, then a
# bounded, sampled mutmut run prints the score per package (docs/testing.md).
mutation: $(STAMP)
	nice -n 10 $(BIN)/python tools/mutation/breakages.py
	nice -n 10 $(BIN)/python tools/mutation/run.py

clean:
	rm -rf $(VENV) build *.egg-info .conformance
