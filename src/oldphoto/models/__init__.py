"""Models: the registry of known weights, download and cache, loading, and the runtimes that run them. Knows no jobs."""
