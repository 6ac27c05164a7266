"""What the flows start or talk to that is not a flow itself.

``serving`` (``dsr serve``) with its ``http_limits`` and ``production_log``, ``local_lm`` (the bundled model's
server, ``python -m flows.services.local_lm``), ``registry`` (programs in the MLflow model registry),
``prefect_server`` (the ephemeral Prefect API) and ``processes`` (child processes that die with dsr).
"""
