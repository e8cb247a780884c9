# Two commands for a new user: `make demo` and `make test` (`make lab` to work in JupyterLab);
# `make run DATA=my.csv` for your own file. All create or reuse .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: install demo run lab test bench bench-torch clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

## Run the notebook top to bottom, headless, on the built-in corpus; the executed notebook goes
## to plots/<run_name>/ beside the run's table.
demo: $(STAMP)
	$(PY) -m training_assets.notebook Text_Synthesis_Comparison.ipynb

## The notebook's experiment on your own file: make run DATA=my.csv [COLUMN=text] [RUN=name]
## DATA: a .csv, a .txt (one document per line), a folder of .txt files or a quoted glob.
run: $(STAMP)
	@test -n "$(DATA)" || { echo "error: make run needs DATA=path/to/file.csv (and COLUMN=name when the CSV has several text columns)" >&2; exit 2; }
	$(PY) -m training_assets.notebook Text_Synthesis_Comparison.ipynb --set 'data_file="$(DATA)"' \
		$(if $(COLUMN),--set 'text_column="$(COLUMN)"') $(if $(RUN),--set 'run_name="$(RUN)"')

## Open the notebook in JupyterLab (live progress bars, the generation panel).
lab: $(STAMP)
	$(VENV)/bin/jupyter lab Text_Synthesis_Comparison.ipynb

## The whole test suite (what CI runs).
test: $(STAMP)
	$(PY) -m pytest

## Benchmarks: print figures and write benchmarks/results/*.json.
bench: $(STAMP)
	$(PY) -m benchmarks

## Optional: PyTorch (benchmark-only) for the Keras-vs-PyTorch comparison.
bench-torch: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt

clean:
	rm -rf $(VENV) executed .pytest_cache
