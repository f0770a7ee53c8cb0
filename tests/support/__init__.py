"""Test drivers shared by the tests and benchmarks/: real processes on 127.0.0.1, the rollback scenario."""
