"""What insights decides from plain data: the facts events carry, and the DORA keys."""
