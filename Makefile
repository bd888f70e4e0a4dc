# The two commands of the README. Both set up .venv first (idempotent: a stamp file per input hash).
#   make demo   - the local pipeline on the embedded tiny model (CPU, about a minute)
#   make test   - lint, type check and the whole test suite, the drills included (make test-fast: without the tests
#                 that train a model)
#   make drills - the fault drills alone: kill -9, SIGTERM, torn checkpoints, full disk, two processes, bad input,
#                 row accounting of every reader, secrets and unknown keys refused by the chart's schema
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-$(shell cat pyproject.toml constraints.txt ci/install-helm.sh ci/install-promtool.sh | sha1sum | cut -c1-12)
# Tools only the checks need (not `make demo`): helm-docs, built with Debian's Go packages (apt-get install).
DEV_STAMP := $(VENV)/.dev-tools-$(shell cat ci/install-helm-docs.sh ci/checkov.sh | sha1sum | cut -c1-12)
RUN_ID ?= demo-$(shell date +%Y%m%d-%H%M%S)
PYTEST_ARGS ?=
# pytest-xdist workers for the suite (the tests pin one torch thread per process, tests/conftest.py). Four on a
# 2-core machine: the end-to-end tests spend about half their time waiting on process start-up, sqlite and fsync,
# so two workers left the cores half idle (14 m 56 s against 8 m 54 s for the whole suite). `worksteal` hands a
# finished worker the rest of a busy one's queue: the few long tests do not end up last on one worker.
TEST_JOBS ?= 4
XDIST = -n $(TEST_JOBS) --dist worksteal

.PHONY: setup dev-tools demo demo-repeat test test-fast drills schema chart-docs lint typecheck format clean

setup: $(STAMP)

$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "korean-llm needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[cpu,dev,tracking,cluster]'
	ci/install-helm.sh $(BIN)
	ci/install-promtool.sh $(BIN)
	rm -f $(VENV)/.setup-*
	touch $@

dev-tools: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP)
	ci/install-helm-docs.sh $(BIN)
	ci/checkov.sh --install
	rm -f $(VENV)/.dev-tools-*
	touch $@

demo: setup
	$(BIN)/korean-llm run -f values/local.yaml --run-id $(RUN_ID)

# The demo's DAG RUNS times (default 10): pass count, stage times, spread of every evaluate score.
RUNS ?= 10
demo-repeat: setup
	$(BIN)/python bench/demo_repeat.py --runs $(RUNS)

test: lint typecheck dev-tools
	$(BIN)/pytest $(XDIST) --durations=15 $(PYTEST_ARGS)

# The same checks without the tests that train a model (pytest -m slow): minutes less on a CPU.
test-fast: lint typecheck dev-tools
	$(BIN)/pytest $(XDIST) -m "not slow and not gpu and not multi_gpu" $(PYTEST_ARGS)

# The fault drills; the disk-full ones mount a small tmpfs and need root (as in CI). Then the row-accounting tests
# of the readers (CSV, JSON, hub sources: marker `accounting`; this -m replaces the default one).
drills: setup
	$(BIN)/pytest tests/drills tests/test_resume.py tests/test_bad_input.py tests/test_chart_runtime_schema.py $(PYTEST_ARGS)
	$(BIN)/pytest tests/test_datasets.py -m accounting $(PYTEST_ARGS)

# Regenerate the runtime part of charts/values.schema.json from the pydantic config models (a test checks it).
schema: setup
	$(BIN)/python -m korean_llm.config.schema

# Regenerate charts/README.md with helm-docs (ci/install-helm-docs.sh) from charts/README.md.gotmpl and the `# --`
# comments of the values files: one README for the umbrella, its subcharts' values under their keys, in file order
# (tests/test_chart.py runs helm-docs with the same flags and compares).
HELM_DOCS_FLAGS := --chart-search-root charts --chart-to-generate charts --document-dependency-values --sort-values-order file
chart-docs: dev-tools
	$(BIN)/helm-docs $(HELM_DOCS_FLAGS)

lint: setup
	$(BIN)/ruff check runtime tests charts/files
	$(BIN)/ruff format --check runtime tests charts/files

typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format runtime tests charts/files
	$(BIN)/ruff check --fix runtime tests charts/files

clean:
	rm -rf $(VENV) runs .cache .pytest_cache .ruff_cache
