"""Local sandbox: throwaway servers, child processes, synthetic traffic, the demo and its report.

Used by ``ratchet demo``, the tests and the benchmarks; production processes never import it.
"""
