"""Test support for Ferry: an in-memory runtime, real broker namespaces, git remotes,
databases, loopback servers."""

from ferry_testing.broker import BrokerNamespace, EventTap, resolve_amqp_url, tap
from ferry_testing.git import clone, git, log_subjects, make_bare_remote, show, trailer_values
from ferry_testing.inmemory import DeadLettered, InMemoryBroker, in_memory
from ferry_testing.services import ServiceProcess, running, wait_until

__all__ = [
    "BrokerNamespace",
    "DeadLettered",
    "EventTap",
    "InMemoryBroker",
    "ServiceProcess",
    "clone",
    "git",
    "in_memory",
    "log_subjects",
    "make_bare_remote",
    "resolve_amqp_url",
    "running",
    "show",
    "tap",
    "trailer_values",
    "wait_until",
]
