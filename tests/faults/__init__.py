"""The fault schedule: the worker under injected faults, counted."""
