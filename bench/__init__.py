"""Tools, not product: the benchmarks (``manage.py bench_*``) and the stub LLM they and
the tests talk to. Nothing in doce, providers, projects or queue_jobs imports this app
(the layer contract in pyproject.toml); it sits on top and uses them."""
