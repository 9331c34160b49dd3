"""A plain Celery app (the "shop") used with Baton both ways.

- ``app`` and ``tasks``: the shop as it was before Baton, its own app, tasks module and queue
  (``shop``). Nothing in it imports Baton.
- ``checkout``: Baton's side, imported by Baton's workers (``BATON_IMPORTS``): two shop tasks as
  Baton tools (``tool_from_task``) and the ``Checkout`` workflow that calls them.
- ``demo``: the shop's canvases with a Baton run in them (``baton_run``), as the demo runs them.

Not imported by ``import examples``: a worker that serves it needs the shop's broker settings
(``SHOP_*``, see ``app``).
"""
