# Every target that runs Python creates .venv first when it is missing, so a fresh
# clone needs nothing but python3 (3.10 or newer) on the PATH.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# One BLAS thread unless the caller chose otherwise: tinydin's matrices are small,
# and on a busy 2-core machine two OpenBLAS threads made a DIN training step 15
# to 40 times slower (measured with the command line's training loop).
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test notebooks lab bench movielens gradcheck clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,notebooks]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tinydin demo

test: $(STAMP)
	$(PY) -m pytest

gradcheck: $(STAMP)
	$(PY) -m tinydin gradcheck

notebooks: $(STAMP)
	$(PY) -m tinydin.notebook_runner notebooks/*.ipynb

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	$(PY) benchmarks/run.py --out docs/benchmarks.md

# DATA_DIR: a local copy of a MovieLens release. Without it, the folder named by
# TINYDIN_MOVIELENS_DIR is used, or else ml-latest-small is downloaded once into
# $TINYDIN_DATA_HOME (default ~/.cache/tinydin).
movielens: $(STAMP)
	$(PY) -m tinydin compare --data movielens $(if $(DATA_DIR),--data-dir $(DATA_DIR))

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache runs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
