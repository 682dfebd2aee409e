# The two commands of the README: `make demo` and `make test`. Both install what they need.

CARGO ?= cargo

.PHONY: demo test bench deps lint fmt

## Install Debian's mariadb-server and mariadb-client when they are missing.
deps:
	@sh scripts/ensure-mariadb.sh

## Run goneaway's demo on a throwaway local MariaDB it starts itself.
demo: deps
	$(CARGO) run --quiet -p goneaway-cli -- demo

## The whole suite: formatting, lints, unit and integration tests against real servers.
test: deps lint
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks against a throwaway server; results go to BENCHMARKS.md.
bench: deps
	$(CARGO) bench --workspace
