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

# Every performance number the README states, regenerated into bench/results/
# (JSON: the numbers, the machine, the date, the command), then the README's
# tables rewritten from them (scripts/bench-tables.py). About an hour on 2
# cores (the paper study and a clean build are most of it); run it on an
# otherwise idle machine. BENCH=train (or engine, hessian, hessian_scale,
# pyhessian, metrics, paper, scale, storage, null, build) runs one.
RESULTS := bench/results
BENCH ?= engine train hessian hessian_scale pyhessian metrics paper scale storage null build
bench: build
	@mkdir -p $(RESULTS)
	@for b in $(BENCH); do \
	  echo "==> bench $$b" >&2; \
	  case $$b in \
	    engine) scripts/bench-engine.sh --json $(RESULTS)/engine.json.tmp $(BIN) >&2 ;; \
	    train|hessian|pyhessian|metrics) $(WITH_TORCH) $(BIN) bench $$b --json > $(RESULTS)/$$b.json.tmp ;; \
	    hessian_scale) $(WITH_TORCH) $(BIN) bench hessian --widths 784-512-512-10 --widths 784-1024-1024-10 --json > $(RESULTS)/$$b.json.tmp ;; \
	    paper) scripts/bench-paper.sh $(BIN) > $(RESULTS)/paper.json.tmp ;; \
	    scale) scripts/bench-scale.sh $(BIN) > $(RESULTS)/scale.json.tmp ;; \
	    storage) scripts/bench-storage.sh $(BIN) > $(RESULTS)/storage.json.tmp ;; \
	    null) $(WITH_TORCH) scripts/bench-null.sh $(BIN) > $(RESULTS)/null.json.tmp ;; \
	    build) scripts/bench-build.sh > $(RESULTS)/build.json.tmp ;; \
	    *) echo "unknown benchmark $$b" >&2; exit 2 ;; \
	  esac || exit 1; \
	  mv $(RESULTS)/$$b.json.tmp $(RESULTS)/$$b.json; \
	done
	scripts/bench-tables.py

clean-out:
	rm -rf out .eigentrace
