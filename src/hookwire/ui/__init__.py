"""``hookwire ui``: a local, read-only dashboard of what hookwire recorded.

- :mod:`.server`: the HTTP server (the standard library's ``ThreadingHTTPServer``): static
  pages, the JSON API, the access rules (localhost by default, a token for any other host).
- :mod:`.api`: the JSON API the pages call, reading through the store interfaces (traces,
  ledger, conversations), so SQLite and PostgreSQL both serve it.
- :mod:`.spend`: budgets given to the dashboard, and the spend against them.
- ``static/``: the pages (plain HTML, JavaScript and CSS; no build step).
"""

from __future__ import annotations

__all__: list[str] = []
