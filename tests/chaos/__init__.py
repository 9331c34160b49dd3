"""Baton's chaos suite: mixed runs under injected faults, and what went wrong, counted."""
