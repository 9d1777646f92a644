"""The logic of each runbook, one module per notebook. Notebooks tell the story and call these.

Each module declares its verdict list once, as `CAUSES` (cause -> what it means).
"""
