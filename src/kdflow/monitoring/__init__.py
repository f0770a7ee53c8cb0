"""kdflow.monitoring."""
