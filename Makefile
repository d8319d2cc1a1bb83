# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Both create .venv and install the pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# torch==2.13.0 as a CPU wheel from local disk when there is one (an unpinned index pulls a CUDA build).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(FIND_LINKS) -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $(STAMP)

.PHONY: install demo test bench perf train clean
install: $(STAMP)

demo: $(STAMP)  ## start Triton, serve a short workload at every variant, write runs/demo/
	$(VENV)/bin/argus demo

test: $(STAMP)  ## the whole suite, real tritonserver included
	$(VENV)/bin/python -m pytest -q tests

bench: $(STAMP)  ## serving benchmark (ratios measured side by side)
	$(VENV)/bin/argus bench serving

perf: $(STAMP)  ## perf_analyzer against t2i_k0 (starts and stops its own server)
	$(VENV)/bin/argus triton up --models unet,t2i_k0 && $(VENV)/bin/argus perf --model t2i_k0; rc=$$?; $(VENV)/bin/argus triton down; exit $$rc

train: $(STAMP)  ## reproduce tiny_model/weights from the seed, stage by stage, into runs/train_stages (hours on 2 cores)
	$(VENV)/bin/argus train-embedded

clean:
	rm -rf .triton runs
