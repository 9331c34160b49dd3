"""Workflows and tools shipped as examples; ``import examples`` registers every one of them.

Workers import this package (``BATON_IMPORTS`` defaults to ``["examples"]``), so the
examples run distributed as well as in-process (``python -m examples.demo``).
"""

from examples import approval, chat_agent, nested, pipeline, research, tool_runner, tools

__all__ = ["approval", "chat_agent", "nested", "pipeline", "research", "tool_runner", "tools"]
