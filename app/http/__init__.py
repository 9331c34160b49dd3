"""``baton serve``'s HTTP API: llama-agents-server compatible routes on a Baton ``Client``.

``app.http.server.create_asgi_app`` builds the app (not re-exported here, so importing a
sibling module such as ``app.http.auth`` does not import every route)."""
