"""The decisions of artifact-ingest: plain functions over plain data, no I/O."""

from ferry_ingest.domain.identities import CiIdentities, Grant, parse_identities
from ferry_ingest.domain.validation import Accepted, Limits, Outcome, Rejected, validate

__all__ = [
    "Accepted",
    "CiIdentities",
    "Grant",
    "Limits",
    "Outcome",
    "Rejected",
    "parse_identities",
    "validate",
]
