"""kdflow.serving."""
