"""Ferry artifact-ingest: validates what CI published and accepts or rejects it, with reasons."""

SERVICE = "artifact-ingest"
SOURCE = f"ferry/{SERVICE}"

__all__ = ["SERVICE", "SOURCE"]
