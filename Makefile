# The two set-up commands of the README: `make demo` and `make test`.
# Both create the Python 3.10 env when missing (lava-nc 0.10.0 needs 3.10), install hwtune
# and the Fashion-MNIST Debian package when apt is usable, then run.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON310 ?= $(shell command -v python3.10 >/dev/null 2>&1 && python3.10 -c 'pass' 2>/dev/null && echo python3.10 || \
	(ls -d $$HOME/.pyenv/versions/3.10*/bin/python3.10 /root/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null | head -n 1))
FASHION_DIR := /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed

.PHONY: demo test env data clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON310)" || { echo "error: hwtune needs Python 3.10 (lava-nc 0.10.0 imports only on 3.10) and none was found: install one (e.g. pyenv install 3.10) or set PYTHON310=/path/to/python3.10" >&2; exit 1; }
	@test ! -e $(PY) || $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null || { echo "error: hwtune needs Python 3.10, but $(VENV) holds another Python: remove it (make clean) and run make again" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'   # the versions that made the committed numbers
	@touch $(STAMP)

data:
	@if [ ! -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian package dataset-fashion-mnist"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	  else echo "warning: $(FASHION_DIR) missing and apt not usable; Fashion-MNIST tests will fail" >&2; fi; \
	fi

demo: env data
	$(VENV)/bin/hwtune run recipes/quickstart.yaml --seed 0

# Two pytest-xdist workers of one thread each (TEST_WORKERS=2), a test file per worker at a time
# (tests/conftest.py shares the CI sweep between them), then, alone, the tests marked serial (Lava
# stopped by a signal or a kill within a time limit: beside another worker they timed out). About
# 13 min on 2 cores; TEST_WORKERS=0 runs the first part serially with 2 threads (about 18 min).
TEST_WORKERS ?= 2
TEST_THREADS := $(if $(filter 0,$(TEST_WORKERS)),2,1)
test: env data
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not serial"
	OMP_NUM_THREADS=2 $(PY) -m pytest -q -m serial

clean:
	rm -rf $(VENV) runs .pytest_cache
