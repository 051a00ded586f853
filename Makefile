# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv and install the pinned stack (constraints.txt) first; `make test` also installs
# Debian's chromium for the browser check of the HTML outputs when it is missing (as root, with apt-get).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium

.PHONY: demo test install browser clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "installing Debian's chromium for the browser check (tests/browser)"; \
	  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/tmp/kokeilu-chromium.log 2>&1; then \
	    tail -n 20 /tmp/kokeilu-chromium.log >&2; \
	    if [ -n "$$CI" ]; then echo "installing chromium failed: the browser check cannot run" >&2; exit 1; fi; \
	    echo "installing chromium failed (not root?): the browser tests will be skipped" >&2; \
	  fi; \
	fi

demo: $(STAMP)
	$(BIN)/kokeilu demo

test: $(STAMP) browser
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) outputs
