# mmkd: two commands do all the set-up and the work.
#   make demo   generate data, train teacher / student / distilled students, print the mAP table
#   make test   run the test suite
# Both create (or reuse) the virtual environment in $(VENV) and install the pinned stack.

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
PIP        := $(PY) -m pip
# mmcv 2.1.0 has no wheel for torch 2.13: it is built from source once per machine
# (~17 min on 2 cores) into this wheelhouse and reused by every later install.
WHEELHOUSE ?= $(HOME)/.cache/mmkd/wheels
STAMP      := $(VENV)/.mmkd-env-stamp
PYTEST_ARGS ?=

TORCH_PIN      := torch==2.13.0 torchvision==0.28.0
BUILD_PINS     := "setuptools>=77,<81" wheel==0.48.0 ninja==1.13.2 numpy==2.4.6
MMENGINE_PIN   := mmengine==0.10.7
MMCV_VERSION   := 2.1.0
# openmim (mim train/test/run mmkd) and tensorboard (TensorboardVisBackend) are tested; opendatalab
# stays at 0.0.9: 0.0.10 pulls in openxlab, which downgrades setuptools below the build pins.
OPENMMLAB_PINS := mmdet==3.3.0 mmpretrain==1.2.0 pycocotools==2.0.11 pytest==9.2.0 openmim==0.3.9 opendatalab==0.0.9 tensorboard==2.21.0

.PHONY: env test demo demo-quick benchmark clean-env

env: $(STAMP)

$(STAMP): setup.py Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(TORCH_PIN) $(BUILD_PINS)
	$(PIP) install -q $(MMENGINE_PIN)
	@if ! ls $(WHEELHOUSE)/mmcv-$(MMCV_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "Building mmcv $(MMCV_VERSION) with its ops (once per machine, ~17 min on 2 cores)..."; \
		MMCV_WITH_OPS=1 $(PIP) wheel --no-deps --no-build-isolation -w $(WHEELHOUSE) \
			mmcv==$(MMCV_VERSION) || exit 1; \
	fi
	$(PIP) install -q $(WHEELHOUSE)/mmcv-$(MMCV_VERSION)-*.whl
	$(PIP) install -q $(OPENMMLAB_PINS)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import mmcv.ops, mmdet, mmpretrain, mmkd; print('mmkd env ready:', mmkd.__version__)"
	@touch $(STAMP)

test: env
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

demo: env
	$(PY) tools/demo.py

demo-quick: env
	$(PY) tools/demo.py --quick

benchmark: env
	$(PY) tools/benchmark.py

clean-env:
	rm -rf $(VENV)
