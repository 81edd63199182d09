# edgemail — the two commands a new user needs are `make demo` and `make test`.
# Both create the virtualenv on first use; `make test` also installs, when run
# as root, the Debian packages the tests drive as real peers (chat from ppp,
# swaks, iproute2, debootstrap, Dovecot's IMAP and LMTP servers, faketime for clock
# steps, fetchmail, cron, mutt and bsd-mailx for the programs that call sendmail)
# and prepares what the package test installs into
# (a Debian 12 root made by debootstrap, the dependencies' wheels): the tests
# themselves never leave the machine.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
DEB_TEST_PKGS := ppp swaks libnet-ssleay-perl iproute2 procps openssl debootstrap
DEB_TEST_PKGS += dovecot-imapd dovecot-lmtpd
DEB_TEST_PKGS += faketime
DEB_TEST_PKGS += fetchmail
# the programs that call sendmail (tests/system/test_mail_programs.py); bsd-mailx
# itself depends on an MTA (apt would install exim4): only its libraries here,
# the program is unpacked into $(CACHE)/bsd-mailx by `make debs`
DEB_TEST_PKGS += cron mutt liblockfile1 libbsd0
CACHE   := .cache
WHEELS  := $(CACHE)/wheels
DEBROOT := $(CACHE)/debroot-bookworm
STAMP   := $(VENV)/.installed

.PHONY: venv demo test test-fast typecheck bench bench-economy debs deb testdata clean postfix-peer

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
	@if [ ! -x $(CACHE)/bsd-mailx/usr/bin/bsd-mailx ] && [ "$$(id -u)" = 0 ]; then \
	    mkdir -p $(CACHE)/bsd-mailx && cd $(CACHE) && apt-get download -qq bsd-mailx >/dev/null 2>&1 && \
	    dpkg-deb -x bsd-mailx_*.deb bsd-mailx && rm -f bsd-mailx_*.deb || \
	    echo "note: could not unpack bsd-mailx; its test will skip"; \
	fi

# The wheels of edgemail's dependencies (and of its build backend): the
# package is built from them without the network (packaging/deb/build.py).
$(WHEELS)/.done: pyproject.toml | venv
	mkdir -p $(WHEELS)
	$(PY) -m pip download --quiet --disable-pip-version-check --dest $(WHEELS) \
	    setuptools wheel $$($(PY) -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' | tr -d "'")
	touch $@

# A clean Debian 12 root for the package's install test (as root only).
$(DEBROOT)/.done:
	@if [ "$$(id -u)" = 0 ]; then \
	    rm -rf $(DEBROOT) && mkdir -p $(CACHE) && \
	    echo "debootstrap: a Debian 12 root for the package test (about a minute)" && \
	    debootstrap --variant=minbase --include=python3 bookworm $(DEBROOT) http://deb.debian.org/debian >$(CACHE)/debootstrap.log 2>&1 && \
	    touch $@ || { echo "note: debootstrap failed (see $(CACHE)/debootstrap.log); the package test will skip"; rm -rf $(DEBROOT); }; \
	fi

testdata: $(WHEELS)/.done $(DEBROOT)/.done

# A private Postfix 3.7 (apt-get download + dpkg -x into $(CACHE)/peers, as the
# bench does; creates the postfix user and postdrop group) for the manual test
# tests/system/test_postfix_peer.py.  Not in CI, never a system postfix.
postfix-peer: venv
	$(PY) -c 'import sys; sys.path.insert(0, "tests/bench"); import peers, pathlib; \
	    print(peers.install_peer("postfix", pathlib.Path("$(CACHE)/peers").resolve()))'

# edgemail_VERSION_all.deb in dist/ (plain dpkg-deb; see packaging/deb/build.py)
deb: $(WHEELS)/.done
	$(PY) packaging/deb/build.py --out dist --wheels $(WHEELS)

demo: venv
	$(PY) -m demo $(if $(KEEP),--keep,)

test: venv debs testdata typecheck
	$(PY) -m pytest -q $(PYTEST_ARGS)

# mypy over both packages (issue 12: 0 errors is the rule)
typecheck: venv
	$(PY) -m mypy --check-untyped-defs --ignore-missing-imports edgemail link

test-fast: venv
	$(PY) -m pytest -q -m 'not root and not slow' $(PYTEST_ARGS)

# issue 14's link economy alone: four workloads x three systems x two tariffs,
# bench-out/economy.txt, economy.json and economy.svg (cost against p95); seconds
bench-economy: venv
	$(PY) tests/bench/economy.py $(ECONOMY_ARGS)

bench: venv debs
	$(PY) tests/bench/economy.py
	$(PY) tests/bench/run.py $(BENCH_ARGS)
	$(PY) tests/bench/linkup.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache dist $(CACHE)
