"""The DAGs' shared schedule: a clock (cron, UTC) or an Asset event, whichever comes first.

A helper module, not a DAG file (listed in `.airflowignore`); Airflow puts the DAGs folder on
`sys.path`, so the DAG files import it by name.
"""

from __future__ import annotations

import os

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable
from airflow.sdk.exceptions import AirflowTimetableInvalid

from pipeline.stages import clock


def clock_or_asset(
    variable: str, default: str, asset_uri: str
) -> list[Asset] | AssetOrTimeSchedule:
    """Run on the cron in the environment `variable` (`default` when unset; UTC; ``none`` or
    empty: no clock) or when `asset_uri` is updated. A cron Airflow cannot read stops the DAG
    file's import with the variable, its value and the fix (an import error in the UI), not a
    schedule that never fires."""
    assets = [Asset(asset_uri)]
    cron = clock(os.environ.get(variable, default))
    if cron is None:
        return assets
    timetable = CronTriggerTimetable(cron, timezone="UTC")
    try:
        timetable.validate()
    except AirflowTimetableInvalid as err:
        raise ValueError(
            f"${variable}={cron!r} is not a cron schedule ({err}); set it to a cron expression "
            f"such as {default!r}, a preset such as '@daily', or 'none' for no clock"
        ) from err
    return AssetOrTimeSchedule(timetable=timetable, assets=assets)
