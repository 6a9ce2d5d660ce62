# stalldoc: everything installs from nothing into .venv (python3 -m venv, then pip).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test samples lint bench accuracy clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,html,tensorboard]"
	touch $(STAMP)

# A ranked diagnosis of a shipped broken sample (stalldoc exits 1 when it finds something).
demo: install
	$(BIN)/stalldoc check sample_models/saturated_sigmoid.keras sample_models/saturated_sigmoid.npz; \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 1 ]

test: install
	$(BIN)/python -m pytest -q

samples: install
	$(BIN)/python sample_models/generate.py

lint: install
	$(BIN)/ruff check stalldoc tests sample_models

# What a diagnosis costs next to plain training (minutes; `make test` runs its --quick smoke).
bench: install
	$(BIN)/python bench/run.py

# The accuracy corpus: build (verified by training, cached) then score the real CLI on it (minutes).
accuracy: install
	$(BIN)/python -m accuracy.build
	$(BIN)/python -m accuracy.score

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
