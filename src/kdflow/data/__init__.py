"""kdflow.data."""
