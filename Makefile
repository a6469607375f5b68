# speechkit — the two commands a new user needs: `make demo` and `make test`.
PY := .venv/bin/python
SHELL := /bin/bash
DEMO := egs/mini_synth/ssl1
# Let Python cache byte code: with PYTHONDONTWRITEBYTECODE set (some sandboxes and CI images set it),
# every process of a recipe or a test recompiles torch's modules on import, about 7 s of CPU each.
unexport PYTHONDONTWRITEBYTECODE
DEMO_AV := egs/mini_synth/av1

.PHONY: install install-runtime test demo demo-av bench clean help

help:
	@echo "make install   create .venv and install speechkit with pinned dependencies"
	@echo "make test      install, then run the test suite (pytest)"
	@echo "make demo      install, then run the mini recipe on the synthetic corpus end to end"
	@echo "make demo-av   install, then run the mini audio-visual recipe (AV-HuBERT, VSR/ASR/AVSR) end to end"
	@echo "make bench     install, then run the benchmarks in bench/ against their peers"

install:
	@bash tools/install.sh

install-runtime:  # what the recipes need (no test-only packages): make demo uses it
	@bash tools/install.sh --runtime

TEST_JOBS ?= 2  # pytest-xdist workers; a test file stays on one worker (its module fixtures are shared)
test: install
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile test

demo: install-runtime
	cd $(DEMO) && ./run.sh
	@echo "== $(DEMO)/RESULTS.md"; cat $(DEMO)/RESULTS.md

demo-av: install-runtime  # the LRS3-layout corpus only; stages 3, 5 (VoxCeleb2) and 7 (GRID) are skipped
	cd $(DEMO_AV) && ./run.sh --corpora lrs3
	@echo "== $(DEMO_AV)/RESULTS.md"; cat $(DEMO_AV)/RESULTS.md

bench: install
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .venv build *.egg-info .pytest_cache
