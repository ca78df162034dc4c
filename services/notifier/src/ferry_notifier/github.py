"""The ``github`` destination: a GitHub Deployment per release, and its statuses in order.

For a notice that sets a status (:func:`ferry_notifier.domain.github.step_for`):

1. the repository is the one the artifact's ``application.url`` names, on the GitHub of
   ``FERRY_GITHUB_API_URL``; an artifact the notifier never saw stored, or a URL that
   names no repository there, is recorded as ``skipped`` with the reason;
2. the claim on (release, repository) is taken in the database, waiting while another
   delivery, on any replica, holds it (:mod:`ferry_notifier.adapters.deployments`);
3. without a recorded deployment, GitHub is asked for one Ferry created before (a create
   whose answer was lost), else one is created and recorded;
4. the status is set unless one further along was set already (``superseded``), and
   recorded with the end of the claim in one transaction.
"""

from __future__ import annotations

import contextlib
from functools import partial

from ferry_notifier.adapters.github import GitHubApi
from ferry_notifier.adapters.store import Store
from ferry_notifier.claiming import Claimant, Lease
from ferry_notifier.domain.github import (
    NotGitHub,
    deployment_request,
    is_ours,
    link_for,
    parse_repository,
    status_request,
    step_for,
)
from ferry_notifier.domain.notice import Notice
from ferry_notifier.errors import NoRecipient
from ferry_runtime import get_logger

log = get_logger(__name__)


class GitHubDeployments:
    def __init__(
        self,
        api: GitHubApi,
        store: Store,
        claimant: Claimant,
        *,
        host: str,
        protected_environments: tuple[str, ...],
    ) -> None:
        self._api = api
        self._store = store
        self._claims = claimant
        self._host = host
        self._protected = protected_environments

    async def close(self) -> None:
        await self._api.close()

    async def send(self, notice: Notice, lease: Lease) -> str:
        """Set this notice's deployment status; ``sent`` or ``superseded``. Raises
        :class:`NoRecipient` when there is nothing to set it on, and the errors of
        :mod:`ferry_notifier.adapters.github`."""
        step = step_for(notice)
        if step is None:
            raise NoRecipient(f"{notice.kind} sets no GitHub deployment status")
        artifact = notice.artifact
        if not notice.release_id or not notice.environment:
            raise NoRecipient(f"{notice.kind} names no release and environment")
        if artifact is None or not artifact.sha:
            raise NoRecipient(
                f"the notifier has not seen artifact {notice.artifact_id or '?'} stored, so it "
                "knows neither its repository nor its commit"
            )
        try:
            repo = parse_repository(artifact.commit_url, self._host)
        except NotGitHub as exc:
            raise NoRecipient(str(exc)) from None
        claim = await self._claims.deployment(notice.release_id, repo.key, lease)
        try:
            record = claim.record
            if record is None or not record.deployment_id:
                deployment_id = await self._api.find_deployment(
                    repo,
                    artifact.sha,
                    notice.environment,
                    partial(is_ours, release_id=notice.release_id),
                )
                created = deployment_id is None
                if deployment_id is None:
                    body = deployment_request(
                        notice, artifact.sha, protected_environments=self._protected
                    )
                    deployment_id = await self._api.create_deployment(repo, body)
                link = link_for(notice)
                await self._store.save_deployment(notice.release_id, repo.key, deployment_id, link)
                log.info(
                    "GitHub deployment created" if created else "GitHub deployment found",
                    repository=repo.full_name,
                    deployment_id=deployment_id,
                    environment=notice.environment,
                )
                rank, link_to = 0, link
            else:
                deployment_id, rank, link_to = record.deployment_id, record.rank, record.link
            if step.rank <= rank:
                await self._store.settle_deployment(notice.release_id, repo.key, lease.owner)
                log.info(
                    "GitHub deployment status further along already",
                    repository=repo.full_name,
                    deployment_id=deployment_id,
                    state=step.state,
                )
                return "superseded"
            body = status_request(step, link_to or link_for(notice))
            await self._api.create_status(repo, deployment_id, body)
            await self._store.settle_deployment(
                notice.release_id, repo.key, lease.owner, state=step.state, rank=step.rank
            )
        except BaseException:
            # The delivery will be tried again: let go now, so other deliveries go ahead.
            with contextlib.suppress(Exception):
                await self._store.settle_deployment(notice.release_id, repo.key, lease.owner)
            raise
        log.info(
            "GitHub deployment status set",
            repository=repo.full_name,
            deployment_id=deployment_id,
            state=step.state,
        )
        return "sent"
