# One-command set-up: every target creates the virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test run clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[eval,test]'
	touch $(STAMP)

venv: $(STAMP)

## Run the whole test suite (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -n 2 -q tests

## Train the smoke JICD model on the built-in images (the project's main job, a few minutes on CPU).
run: $(STAMP)
	$(PY) -m jdc_jax.main --config=configs/jicd.py:smoke --workdir=runs/smoke

clean:
	rm -rf $(VENV) runs
