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
* `tool_choice`: `none` admits no call at all; `required` applies to the first round of a
  turn only (later rounds are `auto`, so the model can answer with the results).
* `blocklist` is applied where tools are selected (`ToolRegistry.toolset`).
* A call repeated with the same arguments three times in a row is not run
  (`app.manager.tool_loop`), and no further call is admitted in that turn.
* A turn resumed on a round whose calls are open on the path (`tool-results`,
  `tool-approvals`; a head moved onto the round, or an imported one) runs only the calls
  that `admit` let through while that round was live: the first `ToolBudget.round_admits`
  of its calls. The others are answered with an error result, never run: a stored round
  may hold more calls than the policy allows (written by an import, or under a policy
  since lowered).

A reply whose every tool call was refused by these limits ends the turn with
`finish_reason: "tool_limit"` and says which limit in `metadata.tool_limit`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

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
    stop_reason: str | None = None  # set when every further call is refused (see limit)
    # of the round a continued turn resumes (the newest on the path): how many of its
    # calls, in call order, the policy admits (see `tool_budget`)
    round_admits: int = 0
    round_limit: str | None = None  # the limit that refused its other calls

    @property
    def exhausted(self) -> bool:
        """No tool call may be made in this round."""
        return self.limit is not None

    @property
    def limit(self) -> str | None:
        """Which limit refuses further calls: `repeated_call`, `tool_choice`, `max_rounds`,
        `max_tool_calls_per_turn`; None while calls are admitted."""
        if self.stop_reason is not None:
            return self.stop_reason
        if self.rounds_used >= self.max_rounds:
            return "max_rounds"
        if self.calls_used >= self.max_calls:
            return "max_tool_calls_per_turn"
        return None

    def admit(self, calls_so_far: int) -> bool:
        """Whether one more tool call (after `calls_so_far` of this round) is allowed."""
        if self.exhausted or self.calls_used + calls_so_far >= self.max_calls:
            self.dropped += 1
            return False
        return True


async def tool_budget(
    store: StateStore, pack: PromptPack, prompt_name: str, lineage_id: str, head: str | None
) -> ToolBudget:
    """The budget of the turn's next round; `head` is the committed message a continued
    turn (tool results, approvals) starts from, None for a turn started by a user message."""
    policy = pack.prompts[prompt_name].tool_policy or ToolPolicy()
    budget = ToolBudget(policy.max_rounds, policy.max_tool_calls_per_turn)
    if policy.tool_choice == "none":
        budget.stop_reason = "tool_choice"
    if head is None:
        return budget
    # Bounded walk: a turn within the budget has at most max_rounds assistant messages,
    # each followed by at most max_calls tool messages.
    limit = policy.max_rounds * (policy.max_tool_calls_per_turn + 1) + 2
    path = await store.get_path(lineage_id, head, limit=limit)
    reached_user = False
    newest: Message | None = None
    for message in path:  # newest first
        if message.role == Role.user:
            reached_user = True
            break
        if message.role == Role.assistant:
            newest = newest or message
            budget.rounds_used += 1
            budget.calls_used += len(message.tool_calls)
    if newest is not None:  # as `admit` judged its calls while it was live
        size = len(newest.tool_calls)
        before = replace(
            budget, rounds_used=budget.rounds_used - 1, calls_used=budget.calls_used - size
        )
        if not reached_user:
            before.rounds_used = policy.max_rounds
        budget.round_admits = sum(before.admit(k) for k in range(size))
        if budget.round_admits < size:
            budget.round_limit = before.limit or "max_tool_calls_per_turn"
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
