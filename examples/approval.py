"""Human in the loop: an expense claim waits for a reviewer's answer.

``ExpenseApproval`` publishes ``ApprovalRequested`` on the run's stream and pauses in
``ctx.wait_for_event(Approval, ...)``; no worker is held while it waits, and the paused run
can be snapshotted and resumed elsewhere. The answer, sent with ``handler.send_event``,
decides the result. ``ApprovalParent`` runs the approval as a child workflow: the request
surfaces on the parent's stream and an answer sent to the parent reaches the child.
"""

from __future__ import annotations

from typing import Any

from workflows import (
    Context,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class ExpenseClaim(StartEvent):
    """A claim to approve."""

    claimant: str
    amount: float


class ApprovalRequested(InputRequiredEvent):
    """Asks a reviewer to decide on a claim."""

    claimant: str
    amount: float


class Approval(HumanResponseEvent):
    """A reviewer's decision."""

    approved: bool
    reviewer: str
    comment: str = ""


class ExpenseApproval(Workflow):
    """Wait for a reviewer's decision on one claim."""

    @step
    async def review(self, ctx: Context, ev: ExpenseClaim) -> StopEvent:
        request = ApprovalRequested(claimant=ev.claimant, amount=ev.amount)
        answer = await ctx.wait_for_event(Approval, waiter_event=request)
        return StopEvent(result=decision(ev, answer))


def decision(claim: ExpenseClaim, answer: Approval) -> dict[str, Any]:
    """The outcome of a claim, as JSON data."""
    return {
        "claimant": claim.claimant,
        "amount": claim.amount,
        "status": "approved" if answer.approved else "rejected",
        "reviewer": answer.reviewer,
        "comment": answer.comment,
    }


class ExpenseReport(StartEvent):
    """Claims filed together; the total goes to review as one claim."""

    claimant: str
    amounts: list[float]


class ApprovalParent(Workflow):
    """Total a report, get it approved by the ``ExpenseApproval`` child, and pay it out or not."""

    @step
    async def submit(self, ctx: Context, ev: ExpenseReport) -> StopEvent:
        claim = ExpenseClaim(claimant=ev.claimant, amount=sum(ev.amounts))
        outcome = await ctx.run_workflow(ExpenseApproval, claim)
        paid = claim.amount if outcome["status"] == "approved" else 0.0
        return StopEvent(result={"decision": outcome, "paid": paid})
