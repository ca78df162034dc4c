"""git-writer: the only writer of Ferry's config repository."""

SERVICE = "git-writer"

__all__ = ["SERVICE"]
