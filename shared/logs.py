"""Logging set-up for entry points (library code only creates loggers)."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str = "INFO") -> None:
    """Readable one-line logs; quiets third-party chatter (transformers load reports)."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass


def serve_logger(name: str) -> logging.Logger:
    """The logger of a module that runs inside Serve replicas.

    Serve applies its `logging_config` (level, encoding, replica context) to the `ray.serve`
    logger only, and drops other loggers' INFO records; a child of it lands in the replica's
    own log file (`logs/serve/replica_APP_DEPLOYMENT_ID.log`).
    """
    return logging.getLogger(f"ray.serve.{name}")
