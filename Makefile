# Everyday targets. `make dev` is the quick edit-compile loop: an optimised build without LTO,
# copied into the package next to the Python sources (the editable install picks it up).
PY ?= python

.PHONY: build dev test test-rust test-python nightly lint fmt bench reference docs docs-serve wheel clean

build:
	$(PY) -m pip install -e ".[test]"

dev:
	cargo build --profile fast --features python
	cp target/fast/libmultilevel.so python/multilevel/_core.abi3.so

test: test-rust test-python

test-rust:
	cargo test --profile fast

test-python:
	$(PY) -m pytest -q

# The property-based suites with 20,000 random examples per property (CI runs 2,000,
# derandomized: tests/_hypothesis_profiles.py), the pending scale properties included.
nightly:
	HYPOTHESIS_PROFILE=nightly $(PY) -m pytest -q tests/test_hypothesis_*.py

lint:
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	ruff check python tests benches docs
	ruff format --check python tests benches docs

fmt:
	cargo fmt
	ruff format python tests benches docs

bench:
	$(PY) benches/bench_lmm.py
	$(PY) benches/bench_panel.py
	$(PY) benches/bench_inference.py

# The guide (docs/, mkdocs.yml): every python block of every page runs while it builds.
docs:
	$(PY) -m mkdocs build --strict -d site

docs-serve:
	$(PY) -m mkdocs serve

# A release wheel that needs no Rust to install: abi3 (one wheel for CPython >= 3.11), linked by
# zig against glibc 2.17 (manylinux2014) without a container, and the sdist, both into dist/.
# Needs `pip install maturin ziglang` (in the `test` extra).
wheel:
	$(PY) -m maturin build --release --zig --compatibility manylinux2014 --out dist
	$(PY) -m maturin sdist --out dist

# Regenerates tests/reference/ from R (needs R with lme4, nlme, plm, sandwich, clubSandwich).
reference:
	Rscript tests/reference/make_reference.R

clean:
	cargo clean
	rm -f python/multilevel/_core*.so
	rm -rf site dist
