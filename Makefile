# Two commands on a fresh machine: `make train` and `make test`; each installs what it needs.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install train test test-slow lint format bench bench-tabular study-ring clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

# The default experiment: DCGAN, non-saturating loss, MNIST, one epoch. Extra Hydra overrides via ARGS="...".
train: install
	$(PY) src/train.py $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(ARGS)

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: install
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Speed figures into bench/results.md (not a test: this machine is noisy; compare ratios within one run):
# speed.py per model and loss (+ peak memory), reference.py ours vs plain PyTorch loops (+ torch.compile,
# channels-last), metrics.py, sweep.py (basic launcher vs joblib).
bench: install
	$(PY) bench/speed.py
	$(PY) bench/reference.py
	$(PY) bench/metrics.py
	$(PY) bench/sweep.py

# Ours vs CTGAN on UCI Adult with the same wall-clock budget (issue 8): both quality reports and times side by side,
# and a `tabular` section of bench/results.md. Options via ARGS, e.g. ARGS="--minutes 30" (bench/tabular.py -h).
bench-tabular: install
	$(PY) -m pip install -e ".[bench]"
	$(PY) bench/tabular.py $(ARGS)

# The ring mode-collapse study (issue 6): losses x tricks x 3 seeds, then outputs/study_ring/{table.md,samples.png}
# and a copy under docs/. Options via ARGS, e.g. ARGS="--cells none,unrolled_k5 --steps 2000" (bench/study_ring.py -h).
study-ring: install
	$(PY) bench/study_ring.py $(ARGS)
