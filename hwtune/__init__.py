"""hwtune: make trained time-to-first-spike (TTFS) SNNs deployable on neuromorphic chips."""
__version__ = "0.1.0"
