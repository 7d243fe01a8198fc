VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test check lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

# The main job: curate -> SFT -> GRPO -> evaluate the embedded model on a CPU (~14 min on 2 cores).
demo: install
	$(BIN)/kernelrl demo

# A one-minute smoke check: score the bundled softmax solution in the sandbox.
check: install
	$(BIN)/kernelrl check --problem bundled:softmax --candidate kernelrl/sandbox/bundled/softmax/solution.py

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/sandbox_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
