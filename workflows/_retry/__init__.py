"""The parts LlamaIndex's composable ``retry_policy(retry=..., wait=..., stop=...)`` is built
from: retry conditions (which errors), wait strategies (how long), stop conditions (when to give
up). Public through :mod:`workflows.retry_policy`; the policy itself lives there too."""
