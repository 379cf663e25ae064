# The two commands of the README are `make run` and `make test`; both set up what is missing.
CARGO ?= cargo
LISTEN ?= 127.0.0.1:50051
DATA ?= ./data

.PHONY: run test setup build lint bench fuzz-check

run: setup
	$(CARGO) build --release --locked -p abis-server
	./target/release/abis serve --data $(DATA) --listen $(LISTEN)

test: setup
	$(CARGO) test --workspace --locked

setup:
	bash scripts/setup.sh

build:
	$(CARGO) build --release --locked --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

bench: setup
	$(CARGO) bench -p abis-bench

# Builds the fuzz targets (running them needs cargo-fuzz: `cargo fuzz run wsq` in fuzz/).
fuzz-check:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) check --bins
