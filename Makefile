# hark: set-up and everyday commands. `make serve` and `make test` work on a fresh clone.
# Installs are recorded by stamp files in .venv/, so a second run installs nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HARK := $(VENV)/bin/hark

FAMILY ?= transcriber
HOST ?= 127.0.0.1
PORT ?= 3000
WORKERS ?=
DATA ?=
ARGS ?=
# SHIP=1: export into artifacts/ (+ BentoML store) and publish eval/bench results into
# benchmarks/results/ and the README; without it they go to exports/ and reports/.
SHIP ?=
SHIP_FLAG := $(if $(SHIP),--ship)
PYTEST_ARGS ?= -q

# Debian packages the tests and the data synthesis need (FluidSynth renders, held-out soundfonts,
# ffmpeg with libopus and libcodec2 for the codec's anchors, chromium for the demo page's browser tests);
# csound-soundfont is a second held-out piano (piano-repeated).
APT_PACKAGES := fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small csound-soundfont libsndfile1 ffmpeg espeak-ng flite chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help serve test system-deps venv require-data data train export eval bench bento clean

help:
	@echo "make serve    create .venv with hark[serve], register artifacts/, serve on http://$(HOST):$(PORT)"
	@echo "make test     install Debian packages, .venv with hark[dev] + basic-pitch, run lint-imports and pytest"
	@echo "make data|train|export|eval|bench FAMILY=$(FAMILY) [DATA='DIR ...'] [ARGS='...'] [SHIP=1]"
	@echo "               SHIP=1: export replaces artifacts/FAMILY, eval/bench publish to benchmarks/results + docs/FAMILY.md"
	@echo "make bento    bentoml build (GPU image definition; then: bentoml containerize hark:latest)"

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

$(VENV)/.serve.stamp: pyproject.toml | $(PY)
	$(PIP) install -e '.[serve]'
	touch $@

# torch first and pinned: it resolves to the local CPU wheel, whereas a torch pulled in by
# resolution alone could be a multi-GB CUDA build.
$(VENV)/.train.stamp: pyproject.toml | $(PY)
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[train]'
	touch $@ $(VENV)/.serve.stamp

# basic-pitch is an evaluation anchor: --no-deps because its declared requirements pull
# TensorFlow; requirements/basic-pitch.txt lists what its ONNX predict() really needs.
$(VENV)/.dev.stamp: $(VENV)/.train.stamp requirements/basic-pitch.txt
	$(PIP) install -e '.[dev]' -r requirements/basic-pitch.txt
	$(PIP) install --no-deps basic-pitch==0.4.0
	touch $@

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

serve: $(VENV)/.serve.stamp
	$(HARK) serve all --host $(HOST) --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

# lint-imports first: the layer contracts in pyproject.toml (the README's one-way flow).
test: system-deps $(VENV)/.dev.stamp
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

data: system-deps $(VENV)/.train.stamp
	$(HARK) data $(FAMILY) $(ARGS)

train: $(VENV)/.train.stamp
	$(HARK) train $(FAMILY) --config training/configs/$(FAMILY).yaml $(ARGS)

export: $(VENV)/.train.stamp
	$(HARK) export $(FAMILY) $(SHIP_FLAG) $(ARGS)

# Checked before any install, so a forgotten DATA fails at once.
require-data:
	@[ -n "$(DATA)" ] || { echo "make eval needs DATA='DIR ...' (evaluation sets: audio/*.wav + notes/*.csv)"; exit 2; }

eval: require-data $(VENV)/.dev.stamp
	$(HARK) eval $(FAMILY) --data $(DATA) $(SHIP_FLAG) $(ARGS)

bench: $(VENV)/.dev.stamp
	$(HARK) bench $(FAMILY) $(SHIP_FLAG) $(ARGS)

# bentoml build calls uv (and pip-installs it if missing); hark[dev] has it, a serve-only venv may not.
bento: $(VENV)/.serve.stamp
	@$(PY) -c "import importlib.metadata as m; m.version('uv')" 2>/dev/null || $(PIP) install uv
	$(HARK) serve all --register-only
	$(VENV)/bin/bentoml build

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
