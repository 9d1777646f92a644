"""The two customer apps, served by the sandbox under /apps/<profile>/...

/apps/manuscript/...   the manuscript platform API (seed 000)
/apps/peptalk/...      the PepTalk API (seed 004)
/apps/<profile>/admin/...   the admin routes both have (admin.py)
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from . import admin, manuscript, peptalk

routes: list[BaseRoute] = [
    Mount("/manuscript", routes=admin.routes("manuscript") + manuscript.routes),
    Mount("/peptalk", routes=admin.routes("peptalk") + peptalk.routes),
]
