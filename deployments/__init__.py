"""Prefect deployments of webbflow's flows, on a process work pool.

Two equivalent ways to create them:

- ``prefect deploy --all --prefect-file <webbflow>/deployments/prefect.yaml``
  (the file ships in the package; :func:`prefect_yaml_path` says where), or
- ``webbflow deploy`` / :func:`deploy_all` from Python, which can also create
  the work pool and give the reprocessing schedule its products folder.

Deployments (``<flow>/<what it does>``, see :data:`DEPLOYMENT_NAMES`):
``detector1/near-ir-uncal-to-rate`` and ``detector1/miri-uncal-to-rate`` (each
form shows only its instrument family's steps), ``image2/rate-to-cal``,
``image3/cal-to-mosaic`` (when the installation has it),
``guider/guider-uncal-to-cal``, ``dark/dark-uncal-to-dark``,
``association/near-ir-asn-to-mosaic``, ``association/miri-asn-to-mosaic``,
``reprocess/daily-new-references`` (on a cron schedule) and
``asn-generate/pool-to-associations``.  Entry points
are module paths (``webbflow.deployments.flows.<entry>``), so a process worker
runs them wherever webbflow is installed, with nothing to pull.
"""

from __future__ import annotations

from pathlib import Path

# entry point (webbflow.deployments.flows.<entry>) -> deployment name, shown as <flow>/<name>
DEPLOYMENT_NAMES = {
    "detector1_nir": "near-ir-uncal-to-rate",
    "detector1_miri": "miri-uncal-to-rate",
    "image2": "rate-to-cal",
    "image3": "cal-to-mosaic",
    "guider": "guider-uncal-to-cal",
    "dark": "dark-uncal-to-dark",
    "association_nir": "near-ir-asn-to-mosaic",
    "association_miri": "miri-asn-to-mosaic",
    "reprocess": "daily-new-references",
    "asn_generate": "pool-to-associations",
}
DEFAULT_POOL = "webbflow"
DEFAULT_CRON = "0 6 * * *"  # every day at 06:00 UTC
ENTRYPOINT_MODULE = "webbflow.deployments.flows"

DESCRIPTIONS = {
    "detector1_nir": "calwebb_detector1 for NIRCam, NIRISS, NIRSpec and FGS: raw ramps to count-rate images",
    "detector1_miri": "calwebb_detector1 for MIRI: raw ramps to count-rate images",
    "image2": "calwebb_image2: count rates to calibrated images (and i2d)",
    "image3": "calwebb_image3: calibrated exposures to combined mosaic and catalogue",
    "guider": "calwebb_guider: FGS guider-mode exposures",
    "dark": "calwebb_dark: dark exposures",
    "association_nir": "a NIRCam/NIRISS/NIRSpec/FGS association: members through detector1 and image2 in parallel "
                       "(cached), then Stage 3",
    "association_miri": "a MIRI association: members through detector1 and image2 in parallel (cached), then Stage 3",
    "reprocess": "redo the products whose best references changed in the newest CRDS context",
    "asn_generate": "asn_generate: the level-2 and level-3 associations of an association pool, as DMS makes them",
}


def prefect_yaml_path() -> Path:
    """The ``prefect.yaml`` describing every deployment (for ``prefect deploy --all --prefect-file``)."""
    return Path(__file__).with_name("prefect.yaml")


def deployable_flows() -> dict:
    """``{name: flow}`` of the deployable flows (the submodule ``webbflow.deployments.flows`` defines them)."""
    from .flows import FLOWS

    return dict(FLOWS)


def ensure_work_pool(name: str = DEFAULT_POOL) -> bool:
    """Create a process work pool ``name`` if there is none; returns whether it was created."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            pass
        else:
            if pool.type != "process":
                from ..errors import WebbflowError

                raise WebbflowError(f"work pool {name!r} exists with type {pool.type!r}; webbflow deploys to a process pool")
            return False
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return False
    return True


def build_deployments(work_pool: str = DEFAULT_POOL, products_dir: str | None = None, cron: str | None = DEFAULT_CRON,
                      env: dict[str, str] | None = None, names: list[str] | None = None) -> list:
    """The RunnerDeployments of every deployable flow (or of ``names``).

    ``products_dir``: the folder the scheduled reprocessing watches; without it
    the reprocess schedule is created inactive (set ``products`` and turn it on
    in the UI).  ``env``: environment for every run (e.g. ``CRDS_PATH``).
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    fl = deployable_flows()
    out = []
    for name in names or list(fl):
        if name not in fl:
            from ..errors import WebbflowError

            raise WebbflowError(f"no deployable flow {name!r}; known: {', '.join(fl)}")
        kwargs: dict = dict(
            name=DEPLOYMENT_NAMES[name], work_pool_name=work_pool, entrypoint_type=EntrypointType.MODULE_PATH,
            description=DESCRIPTIONS.get(name), tags=["webbflow"],
        )
        if env:
            kwargs["job_variables"] = {"env": dict(env)}
        if name == "reprocess":
            if products_dir:
                kwargs["parameters"] = {"products": str(Path(products_dir).expanduser().resolve())}
            if cron:
                kwargs["schedules"] = [Cron(cron, timezone="UTC", active=bool(products_dir))]
        out.append(fl[name].to_deployment(**kwargs))
    return out


def deploy_all(work_pool: str = DEFAULT_POOL, products_dir: str | None = None, cron: str | None = DEFAULT_CRON,
               env: dict[str, str] | None = None, names: list[str] | None = None, create_pool: bool = True) -> dict[str, str]:
    """Register the deployments with the Prefect API (``PREFECT_API_URL``); returns ``{"flow/name": id}``."""
    if create_pool:
        ensure_work_pool(work_pool)
    ids = {}
    for d in build_deployments(work_pool, products_dir, cron, env, names):
        ids[f"{d.flow_name}/{d.name}"] = str(d.apply())
    return ids


__all__ = ["deploy_all", "build_deployments", "ensure_work_pool", "deployable_flows", "prefect_yaml_path", "DEFAULT_POOL",
           "DEPLOYMENT_NAMES", "DEFAULT_CRON"]
