# The two README commands: `make test` and `make demo`. Both create .venv on a fresh machine and reuse it after.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output
export PIP_DISABLE_PIP_VERSION_CHECK = 1
export TF_CPP_MIN_LOG_LEVEL = 2

.PHONY: test demo install mutation bench bench-ops bench-pipeline bench-denoise training-data pretrained clean

install: $(STAMP)

# After the first target (the default goal stays install); before the rules that name AIRFLOW_STAMP.
include mk/airflow.mk

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==25.3"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

# The DAG tests import Airflow from its own venv (mk/airflow.mk): its providers conflict with the pipeline's pins.
test: $(STAMP) $(AIRFLOW_STAMP)
	AEOPS_AIRFLOW_PYTHON=$(AIRFLOW_VENV)/bin/python $(PY) -m pytest

# Not part of `make test`: cosmic-ray over the core modules, MUTATION_SAMPLE mutants each (0 = all), each module
# against its own fast tests, in a copy of the checkout (mutation/run.py; results kept in build/mutation).
MUTATION_SAMPLE ?= 20
mutation: $(STAMP)
	$(PY) mutation/run.py --sample $(MUTATION_SAMPLE)

demo: $(STAMP)
	$(PY) -m aeops ingest --sample --output $(DEMO_DIR)/shards/sample --num-shards 2
	$(PY) -m aeops augment --config configs/local.yaml --input '$(DEMO_DIR)/shards/sample-*' --output $(DEMO_DIR)/dataset

# Benchmarks regenerate their README tables from what they measure (benchmarks/README.md says how).
bench: bench-ops bench-pipeline bench-denoise

bench-ops: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/ops.py --seconds 0.3 --repeats 3 --write-readme

bench-pipeline: $(STAMP)
	$(PY) benchmarks/pipeline.py --write-readme

# CBM3D rows need the optional bm3d package on PYTHONPATH (benchmarks/README.md). The 20 held-out photographs
# (configs/heldout.csv, docs/heldout.md) come from pinned Debian packages: 145 MB of apt-get download on first use.
bench-denoise: $(STAMP)
	$(PY) benchmarks/denoise.py --write-readme

# 193 photographs from pinned Debian packages (configs/training-data.csv, docs/training-data.md), fetched with
# apt-get download, unpacked, checked against their sha256, then ingested: 480 MB of downloads (400 MB of them
# enlightenment-data), 130 MB of shards, a few seconds of CPU. Needs Debian 12's apt-get and dpkg-deb, no root.
TRAINING_DATA ?= build/training-data
training-data: $(STAMP)
	$(PY) -m aeops.training_data --work $(TRAINING_DATA)
	$(PY) -m aeops ingest $(TRAINING_DATA)/photos --output $(TRAINING_DATA)/shards/train --num-shards 4

# The shipped model, in three stages: configs/pretrained.yaml trains on the embedded sample set (180 min of CPU),
# configs/pretrained-photos.yaml continues those weights on the photographs of `make training-data` (to 278 min in
# all), and configs/pretrained-balanced.yaml continues those with the noise-balanced loss (to 388 min). Each stage
# resumes from its build/*/checkpoints. Nothing under build/ survives a new machine, so stages 2 and 3 start from
# their committed checkpoints in $(COMMITTED_CHECKPOINTS)/ when they have none of their own (a spent budget then
# just exports it again); COMMITTED_CHECKPOINTS= and rm -rf build/pretrained* start from scratch.
PRETRAINED_WORK ?= build/pretrained
PHOTOS_WORK ?= build/pretrained-photos
BALANCED_WORK ?= build/pretrained-balanced
COMMITTED_CHECKPOINTS ?= checkpoints
PRETRAINED_DIR := aeops/pretrained/denoiser
pretrained: training-data
	for stage in $(PHOTOS_WORK):pretrained-photos $(BALANCED_WORK):pretrained-balanced; do \
		work=$${stage%%:*}; committed=$(COMMITTED_CHECKPOINTS)/$${stage##*:}; \
		if [ ! -d $$work/checkpoints ] && [ -n "$(COMMITTED_CHECKPOINTS)" ] && [ -d $$committed ]; then \
			mkdir -p $$work && cp -r $$committed $$work/checkpoints; fi; done
	if [ ! -d $(PHOTOS_WORK)/checkpoints ]; then \
		$(PY) -m aeops train --config configs/pretrained.yaml --model-dir $(PRETRAINED_WORK); fi
	$(PY) -m aeops train --config configs/pretrained-photos.yaml --model-dir $(PHOTOS_WORK)
	$(PY) -m aeops train --config configs/pretrained-balanced.yaml --model-dir $(BALANCED_WORK)
	rm -rf $(PRETRAINED_DIR) && mkdir -p $(PRETRAINED_DIR)
	cp -r $(BALANCED_WORK)/saved_model.pb $(BALANCED_WORK)/fingerprint.pb $(BALANCED_WORK)/variables \
		$(BALANCED_WORK)/aeops_model.json $(PRETRAINED_DIR)/

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
