# Two commands on a fresh machine: `make run` (every notebook, local target) and
# `make test` (the whole test suite). Both set up .venv from the lock file first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_LOCK := uv-requirements.lock
STAMP := $(VENV)/.installed
CREATED := $(VENV)/.created
NODE_STAMP := node_modules/.installed
SAM_STAMP := .venv-sam/.installed
# TARGET is a name other tools export too (a compiler's target triple, another project's
# deploy target): `make run` says when the shell's is the one it takes
ifneq ($(filter environment%,$(origin TARGET)),)
ifneq ($(filter run,$(MAKECMDGOALS)),)
$(info make run: TARGET=$(TARGET), from the environment; unset it, or give make its own: make run TARGET=local)
endif
endif
TARGET ?= local
PYTEST_ARGS ?=

# `make run` refuses another TARGET before it sets anything up, not after
ifneq ($(filter run,$(MAKECMDGOALS)),)
ifneq ($(words $(TARGET)):$(filter local aws,$(TARGET)),1:$(strip $(TARGET)))
$(error TARGET=$(TARGET): make run takes TARGET=local or TARGET=aws)
endif
endif

.PHONY: help setup run test coverage lint lock catalog clean sam-validate

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

# requirements.lock is resolved for Python 3.11: another version would get other pins.
# A .venv without $(CREATED) was cut short while being made (it may lack pip) or is not
# one of ours: made again from scratch, unless a complete install of Python 3.11 is there.
$(CREATED):
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(None if v == "3.11" else "requirements.lock pins Python 3.11 packages, and $(PYTHON) is %s: run make with PYTHON=python3.11" % v)'
	@if [ -f $(STAMP) ] && $(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; \
	then echo "keeping $(VENV): Python 3.11, installed"; \
	else echo "rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)"; rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	touch $@

# uv, which installs everything else, is pinned by hash too: the version in uv-requirements.in,
# the hashes of its files for every platform in $(UV_LOCK) (`make lock`).
# touched: pip leaves an installed uv as it was, older than $(CREATED)
# pip's last words offline are "No matching distribution found": the line after says why
$(UV): $(UV_LOCK) $(CREATED)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r $(UV_LOCK) || \
		{ echo "pip could not install uv from $(UV_LOCK) (above): the set-up downloads packages from the package index, which needs the network" >&2; exit 1; }
	touch $@

# Every file installed must match a hash in the lock. The project itself has none: it comes
# after, without dependencies, which the lock has brought already. $(STAMP) records a digest
# of the files installed from: `brewops` warns when they have changed since, and files only
# touched since (a branch switched and back) are not installed again, which would need the
# package index, and so the network, even for the packages there are.
# ipykernel stages the kernel spec in a folder it makes in $TMPDIR and leaves there, empty:
# it is given one of its own, removed after.
$(STAMP): requirements.lock pyproject.toml $(CREATED) | $(UV)
	@if $(BIN)/python -m brewops.installed check $@ 2>/dev/null; then \
		echo "keeping $(VENV): installed from requirements.lock and pyproject.toml as they are"; \
		touch $@; \
	else set -ex; \
		$(UV) pip sync --quiet --require-hashes --python $(BIN)/python requirements.lock; \
		$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .; \
		kernels=$$(mktemp -d); trap 'rm -rf "$$kernels"' EXIT; \
		TMPDIR=$$kernels $(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null; \
		$(BIN)/python -m brewops.installed record $@; \
	fi

# --prefer-offline: the lock's integrity hashes check what npm's cache holds, which then
# serves without the registry (offline, npm would retry it for minutes)
$(NODE_STAMP): package.json package-lock.json
	npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP) $(NODE_STAMP) ## Create .venv and install the pinned dependencies

# .venv only: node_modules holds tools of the tests, and the fetch says what to do without npm
catalog: $(STAMP) ## Fetch the real Punk API catalogue (npm punkapi-db@2.6.0, checksum-pinned)
	$(BIN)/brewops data fetch

run: catalog ## Execute every notebook against the target (TARGET=local|aws)
	$(BIN)/brewops run --target $(TARGET)

# Two workers (pytest-xdist), each with its own emulator and local stack; `-n 0` in
# PYTEST_ARGS runs the tests in one process.
test: catalog $(NODE_STAMP) $(SAM_STAMP) ## Run the whole test suite (lint, unit, integration, notebooks)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The suite as `make test` runs it, under coverage.py with the Python processes it starts
# ([tool.coverage.*] in pyproject.toml). The report comes after failed tests too; make then
# fails as pytest did.
coverage: catalog $(NODE_STAMP) $(SAM_STAMP) ## Run the test suite under coverage: a report per file, HTML in build/coverage/html
	rm -rf build/coverage
	$(BIN)/python -m coverage run -m pytest -n 2 $(PYTEST_ARGS); status=$$?; \
	$(BIN)/python -m coverage combine --quiet && $(BIN)/python -m coverage report && \
	$(BIN)/python -m coverage html --quiet && echo "HTML report: build/coverage/html/index.html" && \
	exit $$status

lint: $(STAMP) ## ruff over .py and .ipynb, mypy over the package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# $(STAMP) brings uv, and the installed package whose lockfiles module the last step runs
lock: $(STAMP) ## Re-resolve the pinned, hashed dependency set (requirements.lock, environment.yml, constraints.txt, Lambda requirements, uv)
	$(UV) pip compile pyproject.toml --extra notebooks --extra dev --python-version 3.11 --universal \
		--generate-hashes --quiet --custom-compile-command "make lock" -o requirements.lock
	$(UV) pip compile lib/brewops/lambda-requirements.in --python-version 3.13 \
		--python-platform x86_64-manylinux_2_28 --generate-hashes --quiet --custom-compile-command "make lock" \
		-o lib/requirements.txt
	$(UV) pip compile infra/sam-requirements.in --python-version 3.11 --universal \
		--generate-hashes --quiet --custom-compile-command "make lock" -o infra/sam-requirements.lock
	$(UV) pip compile uv-requirements.in --python-version 3.11 --universal \
		--generate-hashes --quiet --custom-compile-command "make lock" -o $(UV_LOCK)
	$(BIN)/python -m brewops.lockfiles write-environment
	$(BIN)/python -m brewops.lockfiles write-constraints

$(SAM_STAMP): infra/sam-requirements.lock | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-sam
	$(UV) pip sync --quiet --require-hashes --python .venv-sam/bin/python infra/sam-requirements.lock
	touch $@

sam-validate: $(SAM_STAMP) ## `sam validate --lint` (the SAM CLI lives in .venv-sam: it is heavy)
	SAM_CLI_TELEMETRY=0 .venv-sam/bin/sam validate --lint --template infra/template.yaml --region us-east-1

# `local down` finds the emulator and Punk API processes through build/local/state.json:
# stop them before that file goes.
clean: ## Stop the local target, then remove build outputs and its state
	$(if $(wildcard $(BIN)/brewops),-$(BIN)/brewops local down)
	rm -rf build .aws-sam .pytest_cache .ruff_cache .mypy_cache
