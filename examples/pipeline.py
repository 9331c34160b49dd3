"""A sequential pipeline: text → normalize → tokenize → count → a dict of word counts.

The simplest shape: each step takes one event type and returns the next; no context needed.
"""

from __future__ import annotations

import re
from collections import Counter

from workflows import Event, StartEvent, StopEvent, Workflow, step


class PipelineInput(StartEvent):
    """The text to analyse."""

    text: str


class Normalized(Event):
    """Lower-cased text with punctuation replaced by spaces."""

    text: str


class Tokenized(Event):
    """The words of the text, in order."""

    tokens: list[str]


class Pipeline(Workflow):
    """Count the words of a text in three sequential steps."""

    @step
    async def normalize(self, ev: PipelineInput) -> Normalized:
        return Normalized(text=re.sub(r"[^\w\s]", " ", ev.text.lower()))

    @step
    async def tokenize(self, ev: Normalized) -> Tokenized:
        return Tokenized(tokens=ev.text.split())

    @step
    async def count(self, ev: Tokenized) -> StopEvent:
        counts = Counter(ev.tokens)
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        return StopEvent(
            result={"words": len(ev.tokens), "unique": len(counts), "top": [list(t) for t in top]}
        )
