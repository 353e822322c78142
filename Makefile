# Two commands set everything up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hilnas-installed
# The CPU build of PyTorch: any looser pin would download the CUDA build (gigabytes).
TORCH_PIN ?= torch==2.13.0
# The suite spends much of its time waiting (processes and Ray instances starting, searches polled), so two
# pytest-xdist workers cut its wall time by a quarter to a half on a 2-core machine (CI: 828-902 s of tests
# against 1091-1145 s in one process); each worker starts its own local Ray instance.
TEST_WORKERS ?= 2

.PHONY: install demo test lint dashboard clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hilnas demo

# Tests marked `timing` assert on wall times, which a second worker's load stretches: they run alone, afterwards.
# A test whose real measurement the protocol refused as unstable under the other worker's load ("stayed unstable
# after N attempts") runs once more; no other failure is rerun, and the summary counts the reruns.
# Both parts always run; pytest's exit status 5 means that a part selected no test.
RERUN_UNSTABLE := --reruns 1 --only-rerun "stayed unstable after|unstable latency of"
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not timing" -n $(TEST_WORKERS) $(RERUN_UNSTABLE) $(PYTEST_ARGS); parallel=$$?; \
	$(BIN)/python -m pytest -m "timing and not slow" $(PYTEST_ARGS); alone=$$?; \
	for status in $$parallel $$alone; do [ $$status -eq 0 ] || [ $$status -eq 5 ] || exit $$status; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

dashboard: $(STAMP)
	$(BIN)/hilnas dashboard

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
