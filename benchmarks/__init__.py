"""Speed benchmarks of the harness (not part of the installed ``bnres`` package; run from a checkout).

* :mod:`benchmarks.throughput` — steady-state training images/s of one run: ``bnres.runs.runner.run`` vs a plain loop
  (``harness_phase``, ``raw_phase``, ``run_case``, ``CASES``/``QUICK``, ``steady_state``, ``report``, ``main``).
* :mod:`benchmarks.sweep` — whole-sweep wall time: ``scripts/train.py -m`` vs the same jobs as a plain script
  (``sweep_jobs``, ``job_configs``, ``run_harness``, ``run_plain``, ``run_sweep_benchmark``, ``format_report``, ``main``).
* :mod:`benchmarks.plain` — the plain PyTorch loop both compare against (``train(cfg, ...)``).
* :mod:`benchmarks.job_profile` — where a sweep's time goes, item by item.

Entry point: ``python scripts/benchmark.py [--sweep | --profile] ...`` (it puts the checkout on ``sys.path``;
other scripts do the same: ``sys.path.insert(0, str(ROOT))`` then ``from benchmarks import throughput``).
"""
