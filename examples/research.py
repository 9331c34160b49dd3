"""Fan-out / fan-in with tool calls: score every document on a topic, then summarise.

``plan`` fans out one ``Found`` event per document with ``ctx.send_event``; ``score`` runs
once per document on the ``analysis`` queue and calls the ``sentiment`` tool; ``combine``
waits with ``ctx.collect_events`` until every score is in. Scores arrive in any order, so
the summary is sorted by document.
"""

from __future__ import annotations

from pydantic import Field

from workflows import Context, Event, Retry, StartEvent, StopEvent, Workflow, step, tool

POSITIVE = frozenset({"great", "promise", "strong", "good", "love", "growing", "excellent"})
NEGATIVE = frozenset({"poor", "risky", "bad", "slow", "failed", "serious", "concerns"})

TEMPLATES = (
    "{topic} shows great promise and strong results",
    "critics call {topic} a poor and risky bet",
    "{topic} is neither good nor bad says the survey",
    "early users love {topic} but report slow support",
    "{topic} adoption is growing with excellent feedback",
    "a failed {topic} rollout raised serious concerns",
    "{topic} was discussed at length",
)


class ResearchQuery(StartEvent):
    """What to research, and how many documents to read."""

    topic: str
    n_docs: int = Field(default=5, ge=1, le=100)


class Found(Event):
    """One document to score."""

    doc: str


class Scored(Event):
    """A document and its sentiment score in [-1, 1]."""

    doc: str
    score: float


class ResearchProgress(Event):
    """Written to the run's stream as the research advances."""

    stage: str
    detail: str


def find_docs(topic: str, n: int) -> list[str]:
    """A deterministic stand-in for a search engine."""
    return [f"doc-{i:02d}: " + TEMPLATES[i % len(TEMPLATES)].format(topic=topic) for i in range(n)]


@tool(queue="analysis", timeout=10)
def sentiment(text: str) -> float:
    """Score a text's sentiment in [-1, 1] by counting positive and negative words."""
    words = text.lower().split()
    pos = sum(w in POSITIVE for w in words)
    neg = sum(w in NEGATIVE for w in words)
    return round((pos - neg) / (pos + neg), 3) if pos + neg else 0.0


class Research(Workflow):
    """Score the documents found for a topic, in parallel, and summarise the scores."""

    queue = "baton"

    @step
    async def plan(self, ctx: Context, ev: ResearchQuery) -> Found | None:
        docs = find_docs(ev.topic, ev.n_docs)
        await ctx.store.set("n", len(docs))
        await ctx.store.set("topic", ev.topic)
        ctx.write_event_to_stream(ResearchProgress(stage="plan", detail=f"{len(docs)} documents"))
        for doc in docs:
            ctx.send_event(Found(doc=doc))
        return None

    @step(queue="analysis", retry=Retry(max_attempts=3), timeout=30)
    async def score(self, ctx: Context, ev: Found) -> Scored:
        value = await ctx.call_tool("sentiment", text=ev.doc)
        return Scored(doc=ev.doc, score=float(value))

    @step
    async def combine(self, ctx: Context, ev: Scored) -> StopEvent | None:
        got = ctx.collect_events(ev, [Scored] * await ctx.store.get("n"))
        if got is None:
            return None
        scores = sorted((e for e in got if isinstance(e, Scored)), key=lambda e: e.doc)
        mean = sum(s.score for s in scores) / len(scores)
        ctx.write_event_to_stream(ResearchProgress(stage="combine", detail=f"{len(scores)} scores"))
        return StopEvent(
            result={
                "topic": await ctx.store.get("topic"),
                "documents": len(scores),
                "mean_score": round(mean, 3),
                "positive": sum(s.score > 0 for s in scores),
                "negative": sum(s.score < 0 for s in scores),
                "scores": [{"doc": s.doc, "score": s.score} for s in scores],
            }
        )
