"""kdflow.evaluation."""
