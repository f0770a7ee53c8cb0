"""Watching a served student: alert rules (source + PrometheusRule), the rollback controller
(`kdflow monitor`) and its MLflow side (`champion`: read the champion alias, roll it back)."""
