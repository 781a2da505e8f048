"""Parley's benchmarks (DESIGN §11). Run them with `make bench`; see bench/README.md."""
