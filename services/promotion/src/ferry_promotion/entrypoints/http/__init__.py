"""Promotion's HTTP API (FastAPI)."""
