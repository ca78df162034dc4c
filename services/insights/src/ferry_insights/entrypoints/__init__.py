"""Thin translators: the event consumer and the HTTP routes."""
