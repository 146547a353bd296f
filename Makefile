# Two entry points (see README):
#   make book   set up, train the book's models (make models), execute every chapter in the full profile,
#               build the site into _build/html
#   make test   set up, run the unit tests and every chapter in the quick profile
#   make models set up, train or load every model the book needs, with progress in the terminal
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SHARED := $(abspath ../shared/data)

# the offline data copy when there is one, else ./data (torchvision downloads into it)
export WNA_DATA_DIR ?= $(if $(wildcard $(SHARED)/MNIST),$(SHARED),$(abspath data))

.PHONY: book test setup clean models
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# The execution cache is keyed on cell code only: drop it when wna_helpers or the profile changed,
# with Sphinx's saved environment (else Sphinx sees unchanged sources and executes nothing).
# The code part is the digest that every results-cache key holds (wna_helpers.code_digest).
STAMP = $(shell $(BIN)/python -m wna_helpers code-digest)-$(shell sha256sum _config.yml | cut -c1-8)-$(WNA_PROFILE)
models: export WNA_PROFILE ?= full
models: setup
	$(BIN)/python -m wna_helpers.book.prepare

book: export WNA_PROFILE ?= full
book: models
	@if [ "$$(cat _build/.wna-stamp 2>/dev/null)" != "$(STAMP)" ]; then \
	  echo "wna_helpers or profile changed: clearing the execution cache"; \
	  rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute; fi
	$(BIN)/jupyter-book build . -W --keep-going
	@mkdir -p _build && echo "$(STAMP)" > _build/.wna-stamp

test: export WNA_PROFILE = quick
test: export WNA_CACHE_DIR ?= $(abspath .cache/wna)
test: setup
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbmake --nbmake-timeout=1800 book

clean:
	rm -rf _build .cache
