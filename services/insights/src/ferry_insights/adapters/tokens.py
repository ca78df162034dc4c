"""The tokens file promotion reads (``FERRY_API_TOKENS_FILE``), read and validated here by the
same reader, the runtime kit's (:mod:`ferry_runtime.tokens`).

Insights only reads, so any role (``viewer``, ``developer``, ``releaser:<env>``, ``admin``)
may call it. What a person may *do* (approve, reject) is decided by promotion, which the
dashboard calls as that person.
"""

from __future__ import annotations

from pathlib import Path

from ferry_runtime.tokens import TokenEntry, TokensFile

#: A caller of insights: the tokens file's entry itself (insights only reads).
Identity = TokenEntry


def _identity(entry: TokenEntry) -> Identity:
    return entry


class TokenStore(TokensFile[Identity]):
    """Identities by token, from the tokens file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _identity)
