# Everything works on a fresh machine with only python3: the first target that needs the
# virtualenv makes it. `make demo` and `make test` are the README's quickstart.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := ci/constraints.txt
# Where `make test-all` looks for more interpreters (pyenv's versions, then PATH; a pyenv shim
# that cannot run is passed over); absent ones are skipped.
EXTRA_PYTHONS ?= python3.12 python3.13

# The compiled build (SPEC S10): a regular, non-editable `pip install` of this checkout into
# $(COMPILED), put first on PYTHONPATH by the targets that run it. Rebuilt whenever a source or
# the build changes, so it never runs stale code. The editable install in $(VENV) is always
# plain Python (src/ as is, no .so anywhere near it): it is what `.venv/bin/python -m pytest`,
# mypy and an editor see.
COMPILED := $(VENV)/compiled
RUN_COMPILED := PYTHONPATH=$(abspath $(COMPILED))
BUILD_INPUTS := $(wildcard src/wsasend/*.py src/wsasend/*.c src/wsasend/*.pyi) setup.py buildsupport/wsasend_build.py pyproject.toml

.PHONY: demo test test-pure lint bench bench-full bench-servers test-all clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[test,dev]' setuptools
	touch $@

# Built with the venv's pinned mypy/setuptools (no build isolation: offline and reproducible).
# Compiled where a C compiler works, plain Python otherwise, or with WSASEND_PURE=1.
$(COMPILED)/.stamp: $(VENV)/.installed $(BUILD_INPUTS)
	rm -rf $(COMPILED)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --target $(COMPILED) .
	$(RUN_COMPILED) $(PY) -c 'import wsasend; print("== wsasend build: compiled =", wsasend.compiled)'
	touch $@

# The demo needs only the runtime dependencies and uvloop (it runs on both loops), not the
# test and lint tools: its own virtualenv, with a regular `pip install .` (compiled where a C
# compiler works, as users get it, SPEC S10), so `make demo` on a fresh clone installs just that.
DEMO_VENV := .venv-demo
$(DEMO_VENV)/.installed: $(BUILD_INPUTS) $(CONSTRAINTS)
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) '.[uvloop]'
	touch $@

demo: $(DEMO_VENV)/.installed
	cd $(DEMO_VENV) && bin/python -m wsasend demo

# The suite against the installed (compiled where possible) package, not src/.
test: $(COMPILED)/.stamp
	$(RUN_COMPILED) $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The suite against the plain-Python sources (the editable install), asserting they are.
test-pure: $(VENV)/.installed
	WSASEND_PURE=1 $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks setup.py buildsupport
	$(VENV)/bin/ruff format --check src tests benchmarks setup.py buildsupport
	$(VENV)/bin/mypy --strict src tests

bench: $(COMPILED)/.stamp
	$(RUN_COMPILED) $(PY) -m wsasend bench

bench-full: $(COMPILED)/.stamp
	$(RUN_COMPILED) $(PY) -m wsasend bench --full

# Issue 11 item 5: real clients (ab, redis-benchmark) against HTTP and RESP servers, stock vs
# wsasend, both loops, on the compiled build. BENCH_ARGS passes options (e.g. --rounds 3).
bench-servers: $(COMPILED)/.stamp
	$(RUN_COMPILED) $(PY) -m wsasend bench --servers $(BENCH_ARGS)

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
	rm -rf $(VENV) $(DEMO_VENV) .venv-python3.* build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
