"""Promotion's use cases, over a unit of work; no storage, broker or HTTP library here."""
