"""Fixtures of the client tests: the playground's browser server (one for both suites)."""

from tests.clients.playground_server import playground_server

__all__ = ["playground_server"]
