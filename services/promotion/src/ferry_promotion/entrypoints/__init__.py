"""Promotion's entrypoints: HTTP routes, Slack routes, event consumers and timers."""
