"""Network definitions only: no training loops, no I/O."""
