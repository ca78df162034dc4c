"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright for Python),
against real promotion, git-writer and insights on one broker namespace and one bare remote.

- a person logs in with an API token;
- a release's own page (where ``ferry watch`` and the notifier link) opens through the login;
- a release appears in the matrix without a reload, and a failed rollout stands out;
- a viewer sees the approval that waits, and no buttons;
- a releaser approves it from the Approvals page, with the keyboard, and watches it commit;
- a forged form post without the CSRF token is refused;
- the pages fit a phone-sized screen.

Screenshots of each page go to ``$FERRY_SCREENSHOTS`` (default ``.ferry/screenshots/``, which
git ignores).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ferry_events import ArtifactAccepted, ArtifactSpec, CloudEvent, RolloutFailed, Workload
from ferry_gitwriter.bootstrap import build as build_git_writer
from ferry_gitwriter.settings import GitWriterSettings
from ferry_insights.bootstrap import build as build_insights
from ferry_insights.settings import InsightsSettings
from ferry_promotion.adapters.tokens import hash_token
from ferry_promotion.bootstrap import build as build_promotion
from ferry_promotion.settings import PromotionSettings
from ferry_testing import BrokerNamespace, EventTap, running

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ROLES = {
    "jane": ["developer", "releaser:prod"],
    "bob": ["developer", "releaser:prod"],
    "vera": ["viewer"],
    "root": ["admin"],
}

pytestmark = [
    pytest.mark.amqp,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does it)",
    ),
]


def screenshots() -> Path:
    folder = Path(os.environ.get("FERRY_SCREENSHOTS", ROOT / ".ferry" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def artifact(artifact_id: str) -> CloudEvent:
    raw = json.loads((EXAMPLES / "artifact.json").read_text())
    raw["id"] = artifact_id
    manifests = {
        env.name: {f.name: f.read_text() for f in sorted(env.iterdir()) if f.is_file()}
        for env in sorted((EXAMPLES / "manifests").iterdir())
        if env.is_dir()
    }
    spec = ArtifactSpec.model_validate(raw)
    return CloudEvent.new(
        ArtifactAccepted(artifact=spec, manifests=manifests), source="ferry/artifact-ingest"
    )


@contextlib.asynccontextmanager
async def ferry(ns: BrokerNamespace, remote: Path, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    tokens = {name: f"{name}-{secrets.token_urlsafe(12)}" for name in ROLES}
    tokens_file = tmp_path / "tokens.yaml"
    entries = [
        {"subject": n, "email": f"{n}@example.com", "roles": r, "sha256": hash_token(tokens[n])}
        for n, r in ROLES.items()
    ]
    tokens_file.write_text(yaml.safe_dump({"tokens": entries}))
    writer = build_git_writer(
        GitWriterSettings(**ns.settings(), data_dir=tmp_path / "gw", config_repo_url=str(remote))
    )
    promotion = await build_promotion(
        PromotionSettings(
            **ns.settings(),
            data_dir=tmp_path / "promotion",
            config_repo_url=str(remote),
            api_tokens_file=tokens_file,
            config_max_age=0.5,
        )
    )
    async with running(writer), running(promotion.runtime):
        api = f"http://127.0.0.1:{promotion.runtime.http_port}"
        insights = await build_insights(
            InsightsSettings(
                **ns.settings(),
                data_dir=tmp_path / "insights",
                api_tokens_file=tokens_file,
                promotion_url=api,
                live_interval=0.2,
                config_commit_url="https://git.example.com/config/commit/{sha}",
            )
        )
        async with running(insights.runtime), httpx.AsyncClient(base_url=api, timeout=10) as http:
            yield {
                "tokens": tokens,
                "api": http,
                "dashboard": f"http://127.0.0.1:{insights.runtime.http_port}",
            }


async def release(f: dict[str, Any], environment: str, artifact_id: str) -> str:
    response = await f["api"].post(
        "/v1/releases",
        json={
            "service": "payments",
            "environment": environment,
            "intent": "release",
            "artifactId": artifact_id,
        },
        headers={"Authorization": f"Bearer {f['tokens']['jane']}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["releaseId"])


async def status_of(f: dict[str, Any], release_id: str, *wanted: str) -> str:
    async with asyncio.timeout(20):
        while True:
            response = await f["api"].get(
                f"/v1/releases/{release_id}",
                headers={"Authorization": f"Bearer {f['tokens']['jane']}"},
            )
            if response.status_code == 200 and response.json()["status"] in wanted:
                return str(response.json()["status"])
            await asyncio.sleep(0.05)


async def test_the_dashboard_in_chromium(
    broker_ns: BrokerNamespace, event_tap: EventTap, bare_remote: Path, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    shots = screenshots()
    artifact_id = "master-0017d995e3-67e9d69164"
    async with ferry(broker_ns, bare_remote, tmp_path) as f, async_playwright() as pw:
        policy = {"approvals": [{"environment": "prod", "required": 1}]}
        put = await f["api"].put(
            "/v1/policies/payments",
            json=policy,
            headers={"Authorization": f"Bearer {f['tokens']['root']}"},
        )
        assert put.status_code == 202, put.text
        await event_tap.wait_one("ferry.policy.changed.v1", timeout=20)
        stored = artifact(artifact_id)
        await broker_ns.publish(stored)
        await event_tap.wait_one(
            "ferry.artifact.stored.v1", lambda e: e.causationid == stored.id, timeout=20
        )

        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            bob = await browser.new_page(viewport={"width": 1200, "height": 800})
            bob.set_default_timeout(15_000)

            # log in
            await bob.goto(f["dashboard"] + "/")
            assert bob.url.endswith("/login")
            await bob.screenshot(path=str(shots / "login.png"), full_page=True)
            await bob.fill("#token", f["tokens"]["bob"])
            await bob.click("form.login button[type=submit]")
            await expect(bob.locator("h1")).to_have_text("What runs where")
            await expect(bob.locator(".who")).to_contain_text("bob@example.com")

            # a release appears in the matrix without a reload
            loads = []
            bob.on("load", lambda page: loads.append(page.url))
            dev = await release(f, "dev", artifact_id)
            cell = bob.locator('td[data-service="payments"][data-environment="dev"]')
            await expect(cell).to_contain_text(artifact_id)
            await expect(cell).to_contain_text("Jane Doe")  # the change's author
            await expect(cell).to_contain_text("master")  # its branch
            # a failed rollout stands out, still without a reload
            failed = RolloutFailed(
                cluster="local",
                environment="dev",
                namespace="payments",
                service="payments",
                artifact_id=artifact_id,
                release_id=dev,
                workload=Workload(kind="Deployment", name="payments", uid="u1"),
                observed_at=datetime.now(UTC),
                reason="CrashLoopBackOff",
                message="back-off restarting failed container",
            )
            await broker_ns.publish(failed, source="ferry/cluster-watcher")
            await expect(cell).to_have_class(re.compile(r"\bfailed\b"))  # red in ferry.css
            await expect(cell).to_contain_text("CrashLoopBackOff")
            assert loads == []
            await bob.screenshot(path=str(shots / "matrix.png"), full_page=True)

            # a release to prod waits for approval; a viewer sees it and no buttons
            prod = await release(f, "prod", artifact_id)
            assert await status_of(f, prod, "awaiting-approval") == "awaiting-approval"
            vera_context = await browser.new_context()
            vera = await vera_context.new_page()
            vera.set_default_timeout(15_000)
            await vera.goto(f["dashboard"] + "/login")
            await vera.fill("#token", f["tokens"]["vera"])
            await vera.press("#token", "Enter")
            await vera.goto(f["dashboard"] + "/approvals")
            waiting = vera.locator(f'li[data-release="{prod}"]')
            await expect(waiting).to_contain_text("0 of 1 approval(s)")
            assert await vera.locator("button.approve, button.reject").count() == 0
            await vera.screenshot(path=str(shots / "approvals-viewer.png"), full_page=True)

            # bob approves it from the Approvals page, with the keyboard, and sees it commit
            await bob.goto(f["dashboard"] + "/approvals")
            item = bob.locator(f'li[data-release="{prod}"]')
            await expect(item.locator("button.approve")).to_be_visible()
            await bob.screenshot(path=str(shots / "approvals.png"), full_page=True)
            comment = item.locator('form[action$="/approve"] input[name="text"]')
            await comment.fill("looks good")
            await comment.press("Tab")  # focus moves to the Approve button
            focused = await bob.evaluate("document.activeElement.textContent")
            assert focused == "Approve"
            await bob.keyboard.press("Enter")
            await expect(bob.locator(".notice")).to_contain_text(f"{prod} approved")
            assert await status_of(f, prod, "committed", "rejected") == "committed"
            await bob.goto(f["dashboard"] + "/services/payments")
            story = bob.locator(f'li[id="{prod}"]')
            await expect(story.locator(".status")).to_have_text("committed")
            await expect(story).to_contain_text("approved by bob@example.com")
            await expect(story.locator("a", has_text="config commit")).to_have_attribute(
                "href", re.compile(r"^https://git\.example\.com/config/commit/")
            )
            await bob.screenshot(path=str(shots / "timeline.png"), full_page=True)

            # the link ferry watch and the notifier give: the release's own page, through the
            # login for a person who has no session yet
            jane_context = await browser.new_context()
            jane = await jane_context.new_page()
            jane.set_default_timeout(15_000)
            await jane.goto(f["dashboard"] + f"/releases/{prod}")
            assert "/login?next=" in jane.url
            await jane.fill("#token", f["tokens"]["jane"])
            await jane.press("#token", "Enter")
            await expect(jane.locator("h1")).to_have_text(f"Release {prod}")
            assert jane.url == f["dashboard"] + f"/releases/{prod}"
            await expect(jane.locator(f'li[id="{prod}"] .status')).to_have_text("committed")
            await expect(jane.locator(f'li[id="{prod}"]')).to_contain_text("approved by bob")
            await jane.screenshot(path=str(shots / "release.png"), full_page=True)
            await jane_context.close()
            await bob.goto(f["dashboard"] + "/")
            await expect(
                bob.locator('td[data-service="payments"][data-environment="prod"]')
            ).to_contain_text(artifact_id)

            # a forged form post without the CSRF token is refused
            await bob.goto(f["dashboard"] + "/approvals")
            await bob.evaluate(
                """release => {
                    const form = document.createElement("form");
                    form.method = "post";
                    form.action = "/approvals/" + release + "/reject";
                    document.body.appendChild(form);
                    form.submit();
                }""",
                prod,
            )
            await expect(bob.locator("h1")).to_contain_text("CSRF token is missing or wrong")
            await bob.screenshot(path=str(shots / "csrf-refused.png"), full_page=True)

            # the DORA page
            await bob.goto(f["dashboard"] + "/dora")
            await expect(bob.locator('section[data-environment="dev"] h2')).to_have_text("dev")
            await bob.screenshot(path=str(shots / "dora.png"), full_page=True)

            # a phone-sized screen: nothing wider than the screen but the matrix's own scroller
            phone = await browser.new_page(viewport={"width": 390, "height": 844})
            await phone.context.add_cookies(await bob.context.cookies())
            for path, name in (("/", "matrix"), ("/approvals", "approvals"), ("/dora", "dora")):
                await phone.goto(f["dashboard"] + path)
                width = await phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, (path, width)
                await phone.screenshot(path=str(shots / f"phone-{name}.png"), full_page=True)

            # logout ends the session
            await bob.goto(f["dashboard"] + "/")
            await bob.click("text=Log out")
            await expect(bob.locator("h1")).to_have_text("Log in")
            await bob.goto(f["dashboard"] + "/approvals")
            assert bob.url.endswith("/login?next=%2Fapprovals")  # back there after a login
        finally:
            await browser.close()
