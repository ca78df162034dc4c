"""The decisions of artifact-ingest: plain functions over plain data, no I/O."""

from ferry_ingest.domain.validation import Accepted, Limits, Outcome, Rejected, validate

__all__ = ["Accepted", "Limits", "Outcome", "Rejected", "validate"]
