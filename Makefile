# The two commands of the README are `make run` and `make test`; both set up what is missing.
CARGO ?= cargo
LISTEN ?= 127.0.0.1:50051
DATA ?= ./data

.PHONY: run test setup build lint bench fuzz-check

# Some sandboxes have a plain file at /dev/null: whatever was last written there is then read
# by cargo's compiler probe (`rustc -` with stdin /dev/null) and fails the build as bad Rust.
# Each cargo step starts by emptying it when it is such a file (a real /dev/null is untouched).
DEVNULL_GUARD = @if [ -f /dev/null ] && [ -w /dev/null ]; then : > /dev/null; fi

run: setup
	$(DEVNULL_GUARD)
	$(CARGO) build --release --locked -p abis-server
	./target/release/abis serve --data $(DATA) --listen $(LISTEN)

# Tests that lack models or ../shared data skip, each logged; the total is printed at the end.
# With ABIS_REQUIRE_DATA=1 (CI) they fail instead.
SKIP_LOG := $(CURDIR)/target/test-skips.log

test: setup
	@mkdir -p target && rm -f $(SKIP_LOG)
	$(DEVNULL_GUARD)
	ABIS_SKIP_LOG=$(SKIP_LOG) $(CARGO) test --workspace --locked; \
	  status=$$?; bash scripts/skip-summary.sh $(SKIP_LOG); exit $$status

setup:
	bash scripts/setup.sh

build:
	$(DEVNULL_GUARD)
	$(CARGO) build --release --locked --workspace

lint:
	$(DEVNULL_GUARD)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

bench: setup
	$(DEVNULL_GUARD)
	$(CARGO) bench -p abis-bench

# Builds the fuzz targets (running them needs cargo-fuzz: `cargo fuzz run wsq` in fuzz/).
fuzz-check:
	$(DEVNULL_GUARD)
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) check --bins
