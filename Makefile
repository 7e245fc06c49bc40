# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-cpu.txt
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: setup
	$(PY) -m pytest -q

demo: setup
	$(PY) -m modeconn demo --out runs/demo
	@echo "Results: runs/demo (open runs/demo/report.html)"

bench: setup
	$(PY) benchmarks/curve_step.py

clean:
	rm -rf $(VENV) runs
