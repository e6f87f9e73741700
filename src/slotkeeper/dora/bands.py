"""The performance bands of each delivery metric, in one table.

Source: DORA (Google Cloud), *Accelerate State of DevOps Report 2024*, "Software delivery
performance levels". The report gives four clusters:

- elite: deploys on demand (several a day); change lead time under a day; change fail rate
  5 %; failed deployment recovery time under an hour;
- high: between once a day and once a week; between a day and a week; 20 %; under a day;
- medium: between once a week and once a month; between a week and a month; 10 %; under a day;
- low: between once a month and once in six months; between a month and six months; 40 %;
  between a week and a month.

The clusters are survey results, not thresholds: their change fail rates are not in order
(medium 10 % below high 20 %) and two levels share a recovery time. slotkeeper turns them into
bands by value, best first, each band's upper bound halfway where two clusters touch:
change fail rate elite ≤ 5 %, high ≤ 15 % (between the 10 % and 20 % clusters), medium ≤ 30 %,
low above; recovery time elite < 1 h, high < 1 day, medium < 1 week, low above. Rework rate
(the fifth metric, 2024) has no published clusters and gets no band.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum


class Band(StrEnum):
    ELITE = "elite"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


REPORT = "DORA, Accelerate State of DevOps Report 2024"

DAY = timedelta(days=1)
WEEK = timedelta(weeks=1)

#: deployments per day, at least: elite several a day (taken as ≥ 1 a day on average, "on
#: demand"), high ≥ 1 a week, medium ≥ 1 a month
FREQUENCY = ((Band.ELITE, 1.0), (Band.HIGH, 1 / 7), (Band.MEDIUM, 1 / 30))
#: median lead time below
LEAD_TIME = ((Band.ELITE, DAY), (Band.HIGH, WEEK), (Band.MEDIUM, timedelta(days=30)))
#: change failure rate at most
FAILURE_RATE = ((Band.ELITE, 0.05), (Band.HIGH, 0.15), (Band.MEDIUM, 0.30))
#: median recovery time below
RECOVERY = ((Band.ELITE, timedelta(hours=1)), (Band.HIGH, DAY), (Band.MEDIUM, WEEK))


def frequency_band(per_day: float) -> Band:
    return next((band for band, floor in FREQUENCY if per_day >= floor), Band.LOW)


def lead_time_band(median: timedelta) -> Band:
    return next((band for band, ceiling in LEAD_TIME if median < ceiling), Band.LOW)


def failure_rate_band(rate: float) -> Band:
    return next((band for band, ceiling in FAILURE_RATE if rate <= ceiling), Band.LOW)


def recovery_band(median: timedelta) -> Band:
    return next((band for band, ceiling in RECOVERY if median < ceiling), Band.LOW)
