# The README's two commands: `make demo` and `make test`. Both set the machine up first. BPF needs
# root: as root they run as they are, and for another user each step goes through sudo.
.PHONY: setup demo test lint docs bench
VENV := .venv/bin
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

setup:
	@$(SUDO) scripts/setup.sh

demo:
	@$(SUDO) scripts/setup.sh
	@$(SUDO) scripts/demo.sh

test:
	@$(SUDO) scripts/setup.sh test
	$(SUDO) $(VENV)/python -m pytest

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

# the documentation site, built strictly (a warning fails it) into build/site
docs: setup
	$(VENV)/mkdocs build --strict

# the benchmarks compare against BCC's consumers (headers), bpftrace and the client of nats-server
bench:
	@$(SUDO) scripts/setup.sh test
	$(SUDO) $(VENV)/python -m benchmarks quick
