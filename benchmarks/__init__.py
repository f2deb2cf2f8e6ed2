"""Benchmarks of p2p_teach: the edit against plain generation and the explicit baseline."""
