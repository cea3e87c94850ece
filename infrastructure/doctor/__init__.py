"""Doctor: check that a target is ready to run, and say how to fix what is not."""
