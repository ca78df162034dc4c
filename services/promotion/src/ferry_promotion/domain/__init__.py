"""Promotion's decision logic: environments, policies, release decisions. No I/O."""
