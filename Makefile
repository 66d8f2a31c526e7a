# CPU install: the constraints file pins torch's CPU wheel. GPU users: pip install -e ".[dev]".
PIP_CONSTRAINTS ?= -c constraints-cpu.txt

.PHONY: install check test test-fast bench

install:
	python3 -m pip install $(PIP_CONSTRAINTS) -e ".[dev]"

check:
	ruff check .
	ruff format --check .
	mypy

test:
	python3 -m pytest

test-fast:
	python3 -m pytest -m "not slow"

bench:
	python3 benchmarks/bench_generation.py --threads 1
	python3 benchmarks/bench_loglik_vs_lmeval.py --threads 1
	python3 benchmarks/bench_cache.py
	python3 benchmarks/bench_training_overhead.py --threads 1
	python3 benchmarks/bench_report.py
	python3 benchmarks/bench_generation_vs_lmeval.py --threads 1
	python3 benchmarks/bench_scaling.py --threads 1
	python3 benchmarks/bench_planner.py
