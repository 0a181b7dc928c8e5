# The README's two commands: `sudo make demo` and `sudo make test`. Both set the machine up first.
.PHONY: setup demo test lint bench
VENV := .venv/bin

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test:
	@scripts/setup.sh test
	$(VENV)/python -m pytest

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

# the benchmarks compare against BCC's consumers (headers), bpftrace and the client of nats-server
bench:
	@scripts/setup.sh test
	$(VENV)/python -m benchmarks quick
