"""A prompt's `tool_policy` limits, applied to every turn (DESIGN §8: PromptKit leaves them
unapplied, we do not).

A *turn* starts with a user message and ends with an assistant reply without tool calls;
each provider call in between is a *round*. With client-side tools a turn spans several
runs (each `tool-results` submission continues it), so the budget is counted from the
path: the assistant messages since the last user message.

* `max_rounds`: rounds that may ask for tools. Past it the provider is called with
  `tool_choice: "none"` and any tool call it still returns is dropped, so the turn ends
  with an answer.
* `max_tool_calls_per_turn`: tool calls over the whole turn. Calls beyond it are dropped
  before they are published or committed (logged), and once the budget is spent the next
  round runs with `tool_choice: "none"`.
* `blocklist` is applied where tools are selected (`app.packs.tools.prompt_tools`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.domain import Message, Role
from app.packs import PromptPack, ToolPolicy
from app.stores.base import StateStore

log = logging.getLogger("parley.tools")


@dataclass
class ToolBudget:
    max_rounds: int
    max_calls: int
    rounds_used: int = 0  # earlier rounds of this turn (provider calls already answered)
    calls_used: int = 0  # tool calls those rounds made
    dropped: int = 0

    @property
    def exhausted(self) -> bool:
        """No tool call may be made in this round."""
        return self.rounds_used >= self.max_rounds or self.calls_used >= self.max_calls

    def admit(self, calls_so_far: int) -> bool:
        """Whether one more tool call (after `calls_so_far` of this round) is allowed."""
        if self.exhausted or self.calls_used + calls_so_far >= self.max_calls:
            self.dropped += 1
            return False
        return True


async def tool_budget(
    store: StateStore, pack: PromptPack, prompt_name: str, lineage_id: str, pending: list[Message]
) -> ToolBudget:
    """The budget of the round about to run; `pending` are the turn's uncommitted messages
    (a user message, or tool results answering the head)."""
    policy = pack.prompts[prompt_name].tool_policy or ToolPolicy()
    budget = ToolBudget(policy.max_rounds, policy.max_tool_calls_per_turn)
    if not pending or pending[0].role == Role.user or pending[0].parent_id is None:
        return budget
    # Bounded walk: a turn within the budget has at most max_rounds assistant messages,
    # each followed by at most max_calls tool messages.
    limit = policy.max_rounds * (policy.max_tool_calls_per_turn + 1) + 2
    path = await store.get_path(lineage_id, pending[0].parent_id, limit=limit)
    reached_user = False
    for message in path:  # newest first
        if message.role == Role.user:
            reached_user = True
            break
        if message.role == Role.assistant:
            budget.rounds_used += 1
            budget.calls_used += len(message.tool_calls)
    if not reached_user:  # longer than any turn within the budget
        budget.rounds_used = max(budget.rounds_used, policy.max_rounds)
    return budget


def log_dropped(budget: ToolBudget, run_id: str) -> None:
    if budget.dropped:
        log.warning(
            "run %s: dropped %d tool calls over the prompt's tool_policy "
            "(max_rounds=%d, max_tool_calls_per_turn=%d)",
            run_id,
            budget.dropped,
            budget.max_rounds,
            budget.max_calls,
        )
