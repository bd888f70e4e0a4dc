# The two commands of the README. Both set up .venv first (idempotent: a stamp file per input hash).
#   make demo   - the local pipeline on the embedded tiny model (CPU, about a minute)
#   make test   - lint, type check and the whole test suite (make test-fast: without the tests that train a model)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-$(shell cat pyproject.toml constraints.txt ci/install-helm.sh | sha1sum | cut -c1-12)
RUN_ID ?= demo-$(shell date +%Y%m%d-%H%M%S)
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint typecheck format clean

setup: $(STAMP)

$(STAMP):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "korean-llm needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[cpu,dev,tracking]'
	ci/install-helm.sh $(BIN)
	rm -f $(VENV)/.setup-*
	touch $@

demo: setup
	$(BIN)/korean-llm run -f values/local.yaml --run-id $(RUN_ID)

test: lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

# The same checks without the tests that train a model (pytest -m slow): minutes less on a CPU.
test-fast: lint typecheck
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check runtime tests charts/files
	$(BIN)/ruff format --check runtime tests charts/files

typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format runtime tests
	$(BIN)/ruff check --fix runtime tests

clean:
	rm -rf $(VENV) runs .cache .pytest_cache .ruff_cache
