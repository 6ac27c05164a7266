"""Prefect flows and the ``dsr`` CLI; ``flows.services`` holds what they start or talk to.

Importing this package changes nothing in the process: the embedded Prefect defaults (``flows.runtime``) are
applied when a command starts and when ``ephemeral_api`` starts Prefect's temporary server.
"""
