"""Benchmarks and load tools, the top layer: `citeqa bench`, the soak and load scripts, live servers."""
