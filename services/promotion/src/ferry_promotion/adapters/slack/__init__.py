"""Slack: the Web API user directory, response_url posts and request signing."""
