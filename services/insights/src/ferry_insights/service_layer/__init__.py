"""Use cases against small Protocols: project an event, answer a DORA question."""
