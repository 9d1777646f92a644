"""The two customer apps, served by the sandbox under /apps/<profile>/...

/apps/manuscript/...   the manuscript platform API (seed 000)
/apps/peptalk/...      the PepTalk API (seed 004)
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount

from . import manuscript, peptalk

routes: list[BaseRoute] = [
    Mount("/manuscript", routes=manuscript.routes),
    Mount("/peptalk", routes=peptalk.routes),
]
