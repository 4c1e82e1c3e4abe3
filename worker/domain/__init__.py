"""The INS domain rules, free of any I/O."""
