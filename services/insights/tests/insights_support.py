"""What insights' tests share besides fixtures: the tokens of the tokens file, and the type
of the ``insights`` fixture. (Test modules import this, never ``conftest``: every package has
a conftest, and which one ``import conftest`` finds depends on collection order.)"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ferry_insights.bootstrap import InsightsService

TOKENS = {"viewer": "viewer-token-123", "admin": "admin-token-456", "nobody": "no-role-789"}

InsightsFactory = Callable[..., contextlib.AbstractAsyncContextManager[InsightsService]]
