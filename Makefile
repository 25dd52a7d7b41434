# The two commands of the README: `make demo` (main job on generated data) and `make test`.
# Both create the virtualenv and install the project with torch pinned by the constraints file.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean-data

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/facslab demo

test: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python bench/preprocessing.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/live.py

clean-data:
	rm -rf data/demo
