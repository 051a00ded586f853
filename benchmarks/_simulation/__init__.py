"""Helpers of ``benchmarks/simulate_inference.py``: the data-generating processes, the methods, the rendering."""
