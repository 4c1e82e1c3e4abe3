"""The INSi teleservice: contract, transport, replies and faults."""
