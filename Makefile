# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup system-deps test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-cpu.txt
	$(PY) -m pip install --quiet -e '.[test,vision,hf]'
	touch $@

# What the tests need beyond Python: Fashion-MNIST and the fortunes text (real-data tests) and chromium (the report
# rendered in a real browser), from Debian's packages. Installed only where missing and only
# as root with apt; elsewhere the tests that need them are skipped with a printed reason.
system-deps:
	@sh scripts/system_deps.sh

# Lint (ruff) and the layers contract (import-linter, configured in pyproject.toml) before the tests:
# zero findings, or the run fails.
test: setup system-deps
	$(PY) -m ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports
	$(PY) -m mypy
	$(PY) -m pytest -q -rs

# the demo's optional --lm part reads the fortunes text: installed the same way
demo: setup
	@sh scripts/system_deps.sh fortunes
	$(PY) -m modeconn demo --out runs/demo
	@echo "Results: runs/demo (open runs/demo/report.html)"

bench: setup
	$(PY) benchmarks/curve_step.py

clean:
	rm -rf $(VENV) runs
