"""Model server: /predict (micro-batched), /feedback, /healthz, /readyz, /metrics, hot swap, shadow teacher.

Entry point: `kdflow.serving.app.main(argv)` (`kdflow serve`, or `python -m kdflow.serving.app`).
"""
