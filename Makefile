# S2VNet set-up and checks. `make test` and `make demo` install what they need first.
#   make install   .venv with torch + torchvision, Detectron2 and s2vnet[test]
#                  (DETECTRON2=/path/to/detectron2 installs your own Detectron2 build instead of the registry wheel)
#   make data      the demo scans (TotalSegmentator 2.18.0 reference files, fetched from PyPI, sha256-pinned)
#   make lint      ruff: lint rules and formatting (ruff.toml); `ruff format .` fixes the formatting
#   make test      lint, then the CPU test suite (first tries to apt-install Debian's chromium for the browser test:
#                  as root or with passwordless sudo only; otherwise that one test is skipped, with the reason)
#   make serve     the browser viewer on the demo model and scans (after make demo)
#   make demo      the main job (see README)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
DEMO_READY := datasets/s2vnet_demo/reference_files/example_seg_dicom_on_dicom_grid.nii.gz

.PHONY: install data lint test demo serve benchmark gpu-wheels clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py tools/install_detectron2.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 10), (3, 11), (3, 12)), "S2VNet needs Python 3.10-3.12, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) tools/install_detectron2.py $(if $(DETECTRON2),--from $(DETECTRON2))
	$(PY) -m pip install -e '.[test]'
	$(PY) -c 'import s2vnet, detectron2, torch; print("s2vnet ready: torch", torch.__version__, "detectron2", detectron2.__version__)'
	touch $@

data: $(DEMO_READY)

$(DEMO_READY): $(VENV)/.installed
	$(PY) -m s2vnet.data.demo_data

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint $(VENV)/.installed $(DEMO_READY)
	-bash tools/install_chromium.sh
	S2VNET_REQUIRE_DEMO_DATA=1 $(PY) -m pytest -q -rs tests

serve: $(VENV)/.installed $(DEMO_READY)
	@test -f output/demo/model_final.pth || { echo "output/demo/model_final.pth missing: run make demo first"; exit 2; }
	$(VENV)/bin/s2vnet-serve --config-file configs/demo/s2vnet_r18_demo.yaml --weights output/demo/model_final.pth \
		--data-root datasets/s2vnet_demo/reference_files

demo: $(VENV)/.installed $(DEMO_READY)
	$(PY) -m s2vnet.data.slice_cache --config-file configs/demo/s2vnet_r18_demo.yaml --dataset demo_ct_train,demo_ct_test
	$(PY) tools/visualize_data.py --config-file configs/demo/s2vnet_r18_demo.yaml --dataset demo_ct_train --num 4 --output-dir output/demo/visualize
	$(PY) tools/visualize_data.py --config-file configs/demo/s2vnet_r18_demo.yaml --dataset demo_ct_test --source annotation --num 4 --output-dir output/demo/visualize
	$(PY) train_net.py --config-file configs/demo/s2vnet_r18_demo.yaml --resume OUTPUT_DIR output/demo
	$(PY) -m s2vnet.predict --config-file configs/demo/s2vnet_r18_demo.yaml --weights output/demo/model_final.pth \
		--input datasets/s2vnet_demo/reference_files/example_ct_dicom --output output/demo/predict/example_ct_dicom_seg.nii.gz
	@echo "Demo on demo_ct_test (labels are TotalSegmentator output, not human annotation):"
	$(PY) tools/demo_table.py output/demo/inference/demo_ct_test/metrics.json --clicks 1 5 --save output/demo/summary.md

benchmark: $(VENV)/.installed
	$(PY) -m pip install -e '.[benchmark]'
	$(PY) projects/S2VNet/benchmark.py

# Wheels (CPython 3.12, the lent GPU image's Python) of what that image lacks, for projects/S2VNet/gpu_bench.sh.
gpu-wheels: $(VENV)/.installed
	$(PY) -m pip download --dest .cache/gpu_wheels --only-binary=:all: --python-version 3.12 --no-deps \
		SimpleITK fvcore iopath yacs portalocker tabulate termcolor omegaconf hydra-core antlr4-python3-runtime \
		pycocotools monai==1.6.1 einops
	cp .cache/wheels/sal_detectron2-0.7.2-py3-none-any.whl .cache/gpu_wheels/
	$(PY) projects/S2VNet/benchmark.py --prepare-only

clean:
	rm -rf output .cache/s2vnet_slices
