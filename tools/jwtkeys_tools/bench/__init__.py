"""Development-only: benchmarks (`make bench`). Left out of the Lambda layer."""
