"""Errors of promotion's use cases, each with what a person needs to fix the call.

Exception tree::

    ApplicationError          problem type, HTTP status, title and a detail for people
    ├── Invalid               422: a field of the request is wrong (``errors`` names each)
    ├── Unauthorized          401: no or unknown bearer token
    ├── Forbidden             403: the identity's roles do not allow it (see identity.py)
    ├── NotFound              404: no such release, service or policy
    ├── Conflict              409: the release is not in a state that allows it
    └── Unavailable           503: the config repo or the database cannot be reached now
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


class ApplicationError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Invalid(ApplicationError):
    status = 422
    title = "Invalid request"
    slug = "invalid-request"

    def __init__(self, detail: str, errors: list[FieldError]) -> None:
        super().__init__(detail)
        self.errors = errors

    @classmethod
    def field(cls, field: str, message: str) -> Invalid:
        return cls(f"{field}: {message}", [FieldError(field, message)])


class Unauthorized(ApplicationError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class Forbidden(ApplicationError):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(ApplicationError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(ApplicationError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Unavailable(ApplicationError):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"
