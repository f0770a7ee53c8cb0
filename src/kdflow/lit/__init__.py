"""kdflow.lit."""
