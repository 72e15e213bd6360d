# The two commands a newcomer needs (see README):
#   make run    libtorch (once), build, and run configs/quick.toml end to end
#   make test   libtorch (once), build, and run every test
# Both bootstrap the cached libtorch venv when it is missing.
SHELL := /bin/bash
CONFIG ?= configs/quick.toml
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
BIN := $(TARGET_DIR)/release/eigentrace
WITH_TORCH := scripts/with-libtorch.sh

.PHONY: run test build lint fmt bench clean-out

run: build
	$(BIN) run $(CONFIG)

build:
	$(WITH_TORCH) --no-python cargo build --release --locked

test:
	scripts/ensure-chromium.sh
	$(WITH_TORCH) cargo test --release --locked --workspace

lint:
	cargo fmt --all -- --check
	$(WITH_TORCH) --no-python cargo clippy --release --locked --workspace --all-targets -- -D warnings

bench: build
	$(WITH_TORCH) $(BIN) bench train
	$(WITH_TORCH) $(BIN) bench hessian

clean-out:
	rm -rf out .eigentrace
