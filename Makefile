# One-command set-up: every target creates the virtual environment on first use.
# PYTHON picks the interpreter (3.11 to 3.13); each has its own virtual environment: .venv for
# the default python3, .venv313 for PYTHON=python3.13 (VENV=DIR overrides it).
PYTHON ?= python3
VENV ?= $(if $(filter python3,$(PYTHON)),.venv,$(subst python,.venv,$(subst .,,$(notdir $(PYTHON)))))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv check-python test run clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[eval,test]'
	touch $(STAMP)

venv: $(STAMP)

# The environment must run the Python that PYTHON names (one made by another is refused).
check-python: $(STAMP)
	@test "$$($(PY) -c 'import sys; print(sys.version_info[:2])')" = \
	      "$$($(PYTHON) -c 'import sys; print(sys.version_info[:2])')" || \
	  { echo "$(VENV) runs another Python than $(PYTHON): remove it or give VENV=DIR" >&2; exit 1; }

## Run the whole test suite (what CI runs with the oldest supported Python; with the newest, CI
## runs it with PYTEST_ARGS='-m "not slow"'). PYTEST_ARGS passes more pytest options.
PYTEST_ARGS ?=
test: check-python
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS) tests

## Train the smoke JICD model on the built-in images (the project's main job, a few minutes on CPU).
run: $(STAMP)
	$(PY) -m jdc_jax.main --config=configs/jicd.py:smoke --workdir=runs/smoke

clean:
	rm -rf $(VENV) runs
