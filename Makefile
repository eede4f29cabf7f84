# Everything installs into .venv from requirements.txt; no step needs a manual install.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install browser quickstart quickstart-compare test test-fast bazel-test clean

$(VENV)/installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/installed

# Headless Chromium, which the TensorBoard screenshot test drives (tests/test_search_task.py): Debian's
# chromium, installed when it is missing and apt-get can run as root; otherwise that test skips, saying why.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    || echo "apt-get could not install chromium: the TensorBoard screenshot test will skip"; \
	else echo "no chromium, and no apt-get to run as root: the TensorBoard screenshot test will skip"; fi

# The main job on the built-in offline dataset (drnas_tf/quickstart.py): a short DrNAS search on digits,
# retraining of the genotype found, SavedModel export, and the SavedModel's test accuracy.
quickstart: install
	$(PY) -m drnas_tf.quickstart --model_dir=runs/quickstart

# The same, plus a random genotype of the space retrained and tested the same way.
quickstart-compare: install
	$(PY) -m drnas_tf.quickstart --model_dir=runs/quickstart --compare_random

# pytest-xdist processes for the suite, each test file in one of them (its module fixtures built once). Much of
# a test's time is single-threaded (tracing, graph optimisation, starting Python), so two processes pay even
# on two cores; TEST_WORKERS=0 runs the suite in this process. The files go out in tests/conftest.py's order,
# those holding slow tests first, not xdist's default of the files with the most tests first, which left the
# few long end-to-end files for last and one process working alone at the end.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist=loadfile --no-loadscope-reorder)

# The whole suite, slow tests included (what CI runs), and its 15 slowest tests.
test: install browser
	$(PY) -m pytest tests -q $(PYTEST_PARALLEL) --durations=15

# Without the tests marked slow.
test-fast: install
	$(PY) -m pytest tests -q $(PYTEST_PARALLEL) -m "not slow"

# Bazel startup options; CI passes --batch so that no Bazel server outlives the run.
BAZEL_STARTUP ?=
# The test targets bazel-test runs after building every target; CI, which has just run the whole suite through
# pytest, passes a few (.ci/run).
BAZEL_TESTS ?= //...

# The suite through Bazel and BUILD, without the tests marked slow (README, "Bazel"): every target built, then
# $(BAZEL_TESTS) tested. Installs Debian's bazel-bootstrap when there is no bazel; Bazel then works offline.
bazel-test: install
	command -v bazel >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap; }
	bazel $(BAZEL_STARTUP) build //...
	bazel $(BAZEL_STARTUP) test --config=fast $(BAZEL_TESTS)

clean:
	rm -rf $(VENV) .pytest_cache
