"""`vitrine rollout BUNDLE` and `vitrine rollback`: a new model bundle served with no failed
query, and the old one kept for a rollback.

A bundle and its vectors go together (the collection is named after the bundle's model
version), so a rollout runs the new model as a second *slot* beside the serving one:

- the slot's applications: `image-encoder-green`, `text-encoder-green`, `fusion-green` and
  `vector-store-green` (the blue slot has the plain names), copies of the serving slot's with
  the new bundle; the store opens the new model's collection at the same location;
- the slot's ingestion worker (`ingestion-green`, services/ingestion/deployment.py), a new
  consumer group that replays the compacted catalog topic from its start into the new
  collection and then keeps it current, as the serving slot's worker keeps its own;
- once that group has caught up (lag 0), the gateway switches: its `user_config` names the
  slot's applications, and it adopts them in place (services/gateway/slots.py) once they answer
  with one model; a query runs wholly on the slot it started on.

The old slot stays deployed, current and ready: `vitrine rollback` switches the gateway back. A
later rollout replaces the slot that does not serve. On Kubernetes the same shape is two
RayServices and the Service selector (docs/DEPLOY.md).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from shared.serving.apps import FUSION, GATEWAY, IMAGE_ENCODER, TEXT_ENCODER, VECTOR_STORE

ROLES = {
    "image_encoder": IMAGE_ENCODER,
    "text_encoder": TEXT_ENCODER,
    "fusion": FUSION,
    "vector_store": VECTOR_STORE,
}
SLOTS = ("blue", "green")
INGESTION_APP = "ingestion"


class RolloutError(RuntimeError):
    """A rollout or rollback that did not switch; the message says why (the old slot serves)."""


@dataclass(frozen=True)
class Switched:
    slot: str
    model_version: str
    points: int
    previous_model_version: str


def slot_apps(slot: str) -> dict[str, str]:
    """role -> application of a slot (blue: the plain names)."""
    suffix = "" if slot == "blue" else f"-{slot}"
    return {role: f"{app}{suffix}" for role, app in ROLES.items()}


def deployed_config() -> dict:
    """The Serve config in force on the connected cluster, as the controller holds it."""
    from ray.serve._private import api as serve_api

    details = serve_api.serve_start().get_serve_details()
    config = {
        key: details[key]
        for key in ("proxy_location", "http_options", "grpc_options")
        if details.get(key) is not None
    }
    config["applications"] = [
        app["deployed_app_config"]
        for app in details["applications"].values()
        if app.get("deployed_app_config")
    ]
    return config


def _app(config: dict, name: str) -> dict | None:
    return next((a for a in config["applications"] if a["name"] == name), None)


def serving_slot(config: dict) -> str:
    """The slot the gateway's user_config names (blue when it names none)."""
    gateway = _app(config, GATEWAY)
    if gateway is None:
        raise RolloutError("no gateway application is deployed")
    apps = ((gateway.get("deployments") or [{}])[0].get("user_config") or {}).get("apps")
    return next((s for s in SLOTS if slot_apps(s) == apps), "blue")


def _slot_config(config: dict, source: str, target: str, overrides: dict) -> list[dict]:
    """The target slot's applications: copies of the source slot's with `overrides` in their
    args (the bundle), and the slot's ingestion worker."""
    made = []
    for role, name in slot_apps(target).items():
        original = _app(config, slot_apps(source)[role])
        if original is None:
            raise RolloutError(f"the serving slot has no {slot_apps(source)[role]} application")
        app = copy.deepcopy(original)
        app.update(name=name, route_prefix=f"/{name}")
        app["args"] = {**app.get("args", {}), **overrides}
        made.append(app)
    return made


def _ingestion_app(target: str, args: dict) -> dict:
    apps = slot_apps(target)
    return {
        "name": f"{INGESTION_APP}-{target}",
        "route_prefix": f"/{INGESTION_APP}-{target}",
        "import_path": "services.ingestion.deployment:build_app",
        "args": {
            "image_encoder_app": apps["image_encoder"],
            "vector_store_app": apps["vector_store"],
            **args,
        },
        "deployments": [{"name": "SlotIngestion", "ray_actor_options": {"num_cpus": 0}}],
    }


def _switch_gateway(config: dict, slot: str, *, timeout_s: float) -> dict:
    """Deploys `config` with the gateway serving `slot`; the gateway's info after the switch."""
    from operations.serve import deploy

    gateway = _app(config, GATEWAY)
    assert gateway is not None  # serving_slot checked
    deployment = gateway.setdefault("deployments", [{"name": "Gateway"}])[0]
    deployment["user_config"] = {"apps": slot_apps(slot)}
    deploy(config, timeout_s=timeout_s, progress=False)
    info = gateway_info()
    if info["applications"] != slot_apps(slot):
        raise RolloutError(info.get("switch_problem") or "the gateway did not switch")
    return info


def gateway_info() -> dict:
    """The serving gateway's info (model version, catalog, the slot's applications)."""
    import asyncio

    from ray import serve

    from shared.serving.apps import GATEWAY_DEPLOYMENT
    from shared.serving.endpoints import release_handles

    async def ask() -> dict:
        try:
            return await serve.get_deployment_handle(GATEWAY_DEPLOYMENT, GATEWAY).info.remote()
        finally:
            await release_handles()

    return asyncio.run(ask())


def wait_caught_up(settings, group: str, *, timeout_s: float, progress: bool = True) -> int:
    """Waits until `group` has committed every event of the catalog topic; returns them.

    Raises:
        RolloutError: not caught up within timeout_s.
    """
    from shared.streaming.events import group_lag

    deadline = time.monotonic() + timeout_s
    with tqdm(desc="replaying the catalog", unit="event", disable=not progress) as bar:
        while True:
            lag = group_lag(settings.kafka_bootstrap_servers, group, settings.catalog_topic)
            bar.total, bar.n = lag.end, lag.committed
            bar.refresh()
            if lag.exists and lag.lag == 0 and lag.committed == lag.end:
                return lag.committed
            if time.monotonic() > deadline:
                raise RolloutError(
                    f"group {group} had {lag.lag} of {lag.end} events to go after "
                    f"{timeout_s:.0f} s; the old model still serves"
                )
            time.sleep(1.0)


def rollout(
    bundle: Path,
    *,
    ingestion_args: dict | None = None,
    share_cpus: bool = True,
    timeout_s: float = 1800,
    progress: bool = True,
) -> Switched:
    """Serves `bundle` from the slot that does not serve now, once its collection has caught
    up with the catalog topic (a connected Ray driver is needed).

    Args:
        ingestion_args: settings of the slot's ingestion worker over the VITRINE_INGESTION_*
            environment (the consumer group defaults to the worker's, suffixed with the model).
        share_cpus: the new slot's replicas claim no CPUs (they share the cores of a machine
            whose CPUs the serving slot holds, as `make run`'s); False keeps the serving slot's.

    Raises:
        RolloutError: the bundle is the served one, the slot did not catch up or the gateway
            did not switch (the old slot serves on).
    """
    from operations.indexing import proxy_address
    from operations.serve import deploy
    from services.ingestion.config import IngestionSettings
    from shared.models.bundle import Manifest
    from shared.serving.runtime import resolve_bundle
    from shared.settings import load_settings

    path = resolve_bundle(bundle)
    model = Manifest.read(path).bundle_id
    before = gateway_info()
    if before["model_version"] == model:
        raise RolloutError(f"model {model} is the one served")
    config = deployed_config()
    source = serving_slot(config)
    target = next(s for s in SLOTS if s != source)
    settings = load_settings(IngestionSettings, **(ingestion_args or {}))
    group = f"{settings.consumer_group}-{model}"
    worker = {
        "image_encoder_address": proxy_address(),
        "vector_store_address": proxy_address(),
        **(ingestion_args or {}),
        "consumer_group": group,
    }
    gone = {*slot_apps(target).values(), f"{INGESTION_APP}-{target}"}
    apps = _slot_config(config, source, target, {"bundle_path": str(path)})
    apps.append(_ingestion_app(target, worker))
    for app in apps if share_cpus else apps[-1:]:
        for deployment in app.get("deployments", []):
            deployment.setdefault("ray_actor_options", {})["num_cpus"] = 0
    config["applications"] = [a for a in config["applications"] if a["name"] not in gone] + apps
    deploy(config, timeout_s=timeout_s, progress=progress)
    wait_caught_up(settings, group, timeout_s=timeout_s, progress=progress)
    after = _switch_gateway(config, target, timeout_s=timeout_s)
    return Switched(
        target, after["model_version"], after["catalog"]["points"], before["model_version"]
    )


def rollback(*, timeout_s: float = 600) -> Switched:
    """Serves the other slot again (the one the last rollout switched from).

    Raises:
        RolloutError: there is no other slot, or the gateway did not switch.
    """
    before = gateway_info()
    config = deployed_config()
    target = next(s for s in SLOTS if s != serving_slot(config))
    missing = [a for a in slot_apps(target).values() if _app(config, a) is None]
    if missing:
        raise RolloutError(f"nothing to roll back to: {', '.join(missing)} not deployed")
    after = _switch_gateway(config, target, timeout_s=timeout_s)
    return Switched(
        target, after["model_version"], after["catalog"]["points"], before["model_version"]
    )
