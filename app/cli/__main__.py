"""``python -m app.cli``: the same as the ``baton`` console script."""

from app.cli import main

main()
