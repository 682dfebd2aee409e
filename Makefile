# The two commands of the README: `make demo` and `make test`. Both install what they need.

CARGO ?= cargo

.PHONY: demo test torture soak bench deps bench-deps lint fmt compat compat-smoke compat-deps \
	compat-multiplex compat-smoke-multiplex compat-smoke-multiplex-ps

## Install Debian's mariadb-server, mariadb-client, sysbench and python3-pymysql when they
## are missing (the proxy's tests drive it with the real mariadb client, sysbench and PyMySQL),
## galera-4 and rsync (the harness's Galera clusters and their state transfers), and
## prometheus (a real Prometheus scrapes watch and proxy; promtool checks the alert rules).
deps:
	@sh scripts/ensure-mariadb.sh sysbench python3-pymysql galera-4 rsync prometheus

## The benchmarks also compare against HAProxy.
bench-deps:
	@sh scripts/ensure-mariadb.sh sysbench haproxy

## Run goneaway's demo on a throwaway local MariaDB it starts itself.
demo: deps
	$(CARGO) run --quiet -p goneaway-cli -- demo

## The whole suite: formatting, lints, unit and integration tests against real servers,
## and a bounded slice of MariaDB's own test suite through the proxy (compat-smoke).
test: deps lint
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory compat-smoke
	$(MAKE) --no-print-directory compat-smoke-multiplex-ps

## The pool's torture test, long: seeded random work, cancellations and faults, checked by
## an oracle of the contract (make test runs a bounded 3 x 15 s slice of it).
## GONEAWAY_TORTURE_SEED=<seed> reruns a schedule.
torture: deps
	GONEAWAY_TORTURE_SCHEDULES=$${GONEAWAY_TORTURE_SCHEDULES:-10} GONEAWAY_TORTURE_SECS=$${GONEAWAY_TORTURE_SECS:-60} \
		$(CARGO) test -p goneaway --test goneaway torture -- --nocapture

## The proxy's soak, long: seeded autocommit and transaction writers through KILLs,
## restarts, crashes and relay resets, checked by a ledger (lost, doubled, torn, and
## client-visible errors by reason). make test runs a 20 s slice. SECONDS=600 for ten
## minutes; GONEAWAY_SOAK_SEED=<seed> reruns a schedule.
soak: deps
	GONEAWAY_SOAK_SECS=$(or $(SECONDS),120) $(CARGO) test -p goneaway-proxy --test proxy soak -- --nocapture

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks against throwaway servers; results and commands are in BENCHMARKS.md.
## bench/ is its own Cargo workspace so `make test` never builds the baselines (sqlx).
bench: bench-deps
	cd bench && $(CARGO) run --release
	$(CARGO) bench -p goneaway-proxy --bench sysbench

## MariaDB's own test suite (mysql-test-run, Debian's mariadb-test, the same version as the
## server) through the proxy: compat/tests.txt in mtr's --extern mode, each run on a fresh
## throwaway server, directly and through `goneaway proxy`, with the text protocol and
## --ps-protocol. Fails when a test that passes directly fails through the proxy, unless
## compat/known-differences.txt names it with a reason. See compat/run.sh.
compat-deps:
	@sh scripts/ensure-mariadb.sh mariadb-test

compat: compat-deps
	compat/run.sh

## About twenty fast tests of the same (compat/smoke.txt), each given a minute at most.
compat-smoke: compat-deps
	GONEAWAY_COMPAT_TIMEOUT=$${GONEAWAY_COMPAT_TIMEOUT:-1} compat/run.sh --list compat/smoke.txt

## The same two with shared server connections (--multiplex): the differences sharing
## brings by design are in compat/known-differences-multiplex.txt. Shared connections close
## 1 s after their last use (--pool-idle-limit 1; 60 s by default), since many tests end with
## include/wait_until_count_sessions.inc, which waits 10 s for the server's count of
## connections to go back to where it was.
MULTIPLEX_COMPAT = GONEAWAY_COMPAT_PROXY_ARGS="--no-commit-marks --multiplex --pool-idle-limit 1" compat/run.sh \
	--known compat/known-differences.txt --known compat/known-differences-multiplex.txt

compat-multiplex: compat-deps
	$(MULTIPLEX_COMPAT)

compat-smoke-multiplex: compat-deps
	GONEAWAY_COMPAT_TIMEOUT=$${GONEAWAY_COMPAT_TIMEOUT:-1} $(MULTIPLEX_COMPAT) --list compat/smoke.txt

## make test's slice of it: compat/smoke-multiplex.txt, --ps-protocol only.
compat-smoke-multiplex-ps: compat-deps
	GONEAWAY_COMPAT_TIMEOUT=$${GONEAWAY_COMPAT_TIMEOUT:-1} $(MULTIPLEX_COMPAT) \
		--list compat/smoke-multiplex.txt --protocol ps
