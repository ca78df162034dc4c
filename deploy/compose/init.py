"""One-shot set-up for docker compose, as `make run` does it for local processes.

Creates (once) the bare config repository on the `config-repo` volume, a tokens file with
a development admin token and a reviewer token on the `dev-credentials` volume, and hands
the volumes to the services' user (uid 10001). Read a token with
`docker compose -f deploy/docker-compose.yml run --rm init cat /credentials/dev-token`.
"""

import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

UID = GID = 10001
REPO = Path("/srv/config-repo/ferry-config.git")
CREDENTIALS = Path("/credentials")
KUBE = Path("/kube")
IDENTITIES = (
    ("dev", "dev@example.com", ["admin"]),
    ("reviewer", "reviewer@example.com", ["developer", "releaser:staging", "releaser:prod"]),
)


def say(message: str) -> None:
    sys.stdout.write(f"init: {message}\n")


def main() -> None:
    if not (REPO / "HEAD").exists():
        subprocess.run(  # noqa: S603 - fixed arguments, no outside input
            ["git", "init", "--bare", "--quiet", "--initial-branch=main", str(REPO)],  # noqa: S607 - git from the image's PATH
            check=True,
        )
        say(f"created the config repository {REPO}")
    tokens = CREDENTIALS / "tokens.yaml"
    if not tokens.exists():
        entries = []
        for name, email, roles in IDENTITIES:
            token = f"ferry-{name}-{secrets.token_urlsafe(24)}"
            (CREDENTIALS / f"{name}-token").write_text(token + "\n", encoding="utf-8")
            digest = hashlib.sha256(token.encode()).hexdigest()
            entries.append(
                f"  - subject: {name}\n    email: {email}\n    name: {name.title()}\n"
                f"    roles: [{', '.join(repr(r) for r in roles)}]\n    sha256: {digest}\n"
            )
        tokens.write_text(
            "# Development identities written by deploy/compose/init.py.\ntokens:\n"
            + "".join(entries),
            encoding="utf-8",
        )
        say("wrote development tokens: /credentials/dev-token, /credentials/reviewer-token")
    for root in (REPO.parent, CREDENTIALS, KUBE):
        for directory, _, files in os.walk(root):
            os.chown(directory, UID, GID)
            for name in files:
                os.chown(Path(directory) / name, UID, GID)
    for path in CREDENTIALS.iterdir():
        path.chmod(0o600)


if __name__ == "__main__":
    main()
