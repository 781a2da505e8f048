"""Who is calling: the principal an API key maps to (DESIGN §6, Auth)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Principal:
    """`service` principals act for any user named in a request; `user` principals are
    bound to one `user_id` and see only that user's conversations."""

    role: Literal["service", "user"]
    user_id: str | None = None

    def can_access(self, user_id: str) -> bool:
        return self.role == "service" or self.user_id == user_id

    @property
    def scope(self) -> str:
        """A namespace for per-principal records such as idempotency keys."""
        return "service" if self.role == "service" else f"user:{self.user_id}"


SERVICE = Principal(role="service")
