"""An ingestion worker as a Serve application: the worker of one model slot during a rollout
(`vitrine rollout`, operations/rollout.py).

The platform's own worker is a process (`vitrine ingest`, a Deployment on Kubernetes). A slot
that `vitrine rollout` starts needs a worker of its own, in its own consumer group, that fills
the slot's collection from the compacted catalog topic and then keeps it current for as long as
the slot lives, whether it serves or waits for a rollback. Serve runs it beside the slot's
encoders and store, restarts it when its health check fails, and deletes it with the slot.
"""

from __future__ import annotations

import logging
import threading

from ray import serve
from ray.serve import Application

from services.ingestion.config import IngestionSettings
from shared.logs import serve_logger

log = serve_logger(__name__)

STOP_WAIT_S = 30.0


@serve.deployment(name="SlotIngestion", num_replicas=1, max_ongoing_requests=4)
class SlotIngestion:
    """Runs an IngestionWorker on a thread of the replica until the replica stops."""

    def __init__(self, settings: IngestionSettings) -> None:
        from services.ingestion.app import connect, grpc_processor
        from services.ingestion.consumer import IngestionWorker

        logging.getLogger("kafka").setLevel(logging.WARNING)
        self._settings = settings
        connect(settings)
        self._worker = IngestionWorker(settings, grpc_processor(settings))
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="slot-ingestion", daemon=True)
        self._thread.start()
        log.info(
            "slot ingestion: %s as group %s into %s with %s",
            settings.catalog_topic,
            settings.consumer_group,
            settings.vector_store_app,
            settings.image_encoder_app,
        )

    def _run(self) -> None:
        try:
            self._worker.run()
        except BaseException as e:  # reported by check_health; Serve restarts the replica
            self._failure = e
            log.exception("slot ingestion stopped")

    def check_health(self) -> None:
        if not self._thread.is_alive() and not self._worker.stopping.is_set():
            raise RuntimeError(f"the slot's ingestion worker stopped: {self._failure!r}")

    def group(self) -> str:
        return self._settings.consumer_group

    def __del__(self) -> None:
        if hasattr(self, "_worker"):
            self._worker.stopping.set()
            self._thread.join(STOP_WAIT_S)


def build_app(args: dict) -> Application:
    """The application; `args` override VITRINE_INGESTION_* settings (the slot's consumer
    group and application names, the proxy address)."""
    from shared.settings import load_settings

    settings = load_settings(IngestionSettings, **{"metrics_port": 0, **args})
    return SlotIngestion.bind(settings)  # type: ignore[attr-defined]
