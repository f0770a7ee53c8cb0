"""Watching a served student: alert rules (source + PrometheusRule), the rollback controller
(`kdflow monitor`), and the process harness shared by the end-to-end test and the benchmarks."""
