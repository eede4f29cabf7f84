# Everything installs into .venv from requirements.txt; no step needs a manual install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install quickstart test test-fast clean

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/installed

# The main job on the built-in offline dataset: a short DrNAS search on digits (flags/quickstart.flags).
quickstart: install
	$(PY) -m drnas_tf.search --flagfile=flags/quickstart.flags --model_dir=runs/quickstart

# The whole suite, slow tests included (what CI runs).
test: install
	$(PY) -m pytest tests -q

# Without the tests marked slow.
test-fast: install
	$(PY) -m pytest tests -q -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
