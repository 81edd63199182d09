# edgemail — the two commands a new user needs are `make demo` and `make test`.
# Both create the virtualenv on first use; `make test` also installs, when run
# as root, the Debian packages the tests drive as real peers (chat from ppp,
# swaks, iproute2).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
DEB_TEST_PKGS := ppp swaks libnet-ssleay-perl iproute2 procps openssl
STAMP   := $(VENV)/.installed

.PHONY: venv demo test test-fast bench debs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Install the Debian packages the tests use, when missing and when we are root.
debs:
	@missing=""; for p in $(DEB_TEST_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian packages:$$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    else \
	        echo "note: not root, not installing$$missing; tests that need them will skip"; \
	    fi; \
	fi

demo: venv
	$(PY) -m demo $(if $(KEEP),--keep,)

test: venv debs
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -q -m 'not root and not slow' $(PYTEST_ARGS)

bench: venv debs
	$(PY) tests/bench/economy.py
	$(PY) tests/bench/run.py $(BENCH_ARGS)
	$(PY) tests/bench/linkup.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
