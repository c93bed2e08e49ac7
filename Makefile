# Everything works on a fresh machine with only python3: the first target that needs the
# virtualenv makes it. `make demo` and `make test` are the README's quickstart.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := ci/constraints.txt
# Where `make test-all` looks for more interpreters (pyenv's versions, then PATH; a pyenv shim
# that cannot run is passed over); absent ones are skipped.
EXTRA_PYTHONS ?= python3.12 python3.13

.PHONY: demo test lint bench bench-full test-all clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,dev]'
	touch $@

# The demo needs only the runtime dependencies and uvloop (it runs on both loops), not the
# test and lint tools: its own stamp, so `make demo` on a fresh clone installs just those.
$(VENV)/.demo: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[uvloop]'
	touch $@

demo: $(VENV)/.demo
	$(PY) -m wsasend demo

test: $(VENV)/.installed
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy --strict src

bench: $(VENV)/.installed
	$(PY) -m wsasend bench

bench-full: $(VENV)/.installed
	$(PY) -m wsasend bench --full

# The suite on every extra interpreter that is installed, each in its own virtualenv.
test-all: test
	@set -e; for py in $(EXTRA_PYTHONS); do \
	  exe=""; \
	  for cand in $$(ls $${PYENV_ROOT:-$$HOME/.pyenv}/versions/*/bin/$$py 2>/dev/null) $$(command -v $$py || true); do \
	    if $$cand -c 'import sys' >/dev/null 2>&1; then exe=$$cand; break; fi; \
	  done; \
	  if [ -z "$$exe" ]; then echo "== $$py not installed: skipped"; continue; fi; \
	  echo "== $$py ($$exe)"; \
	  $(MAKE) --no-print-directory test PYTHON=$$exe VENV=.venv-$$py; \
	done

clean:
	rm -rf $(VENV) .venv-python3.* build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
