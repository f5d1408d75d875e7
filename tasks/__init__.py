"""One module per stage: plain functions that take clients and plain values, plus thin @task wrappers."""
