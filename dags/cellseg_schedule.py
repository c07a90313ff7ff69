"""The DAGs' shared schedule: a clock (cron, UTC) or an Asset event, whichever comes first.

A helper module, not a DAG file (listed in `.airflowignore`); Airflow puts the DAGs folder on
`sys.path`, so the DAG files import it by name.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

from pipeline.stages import clock


def clock_or_asset(cron: str, asset_uri: str) -> list[Asset] | AssetOrTimeSchedule:
    """Run on `cron` (UTC; ``none`` or empty: no clock) or when `asset_uri` is updated."""
    assets = [Asset(asset_uri)]
    cron_or_none = clock(cron)
    if cron_or_none is None:
        return assets
    timetable = CronTriggerTimetable(cron_or_none, timezone="UTC")
    return AssetOrTimeSchedule(timetable=timetable, assets=assets)
