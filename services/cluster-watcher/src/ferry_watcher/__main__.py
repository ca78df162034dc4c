"""``python -m ferry_watcher``: run the cluster-watcher."""

from __future__ import annotations

import asyncio

from ferry_watcher.bootstrap import build


def main() -> None:
    app = build()
    asyncio.run(app.runtime.run())


if __name__ == "__main__":
    main()
