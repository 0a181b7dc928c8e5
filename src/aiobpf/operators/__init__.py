"""Operators: small verbs that compose async streams of events into pipelines.

    events | filter_uid(1000) | window_count("comm", every=2) | top_n(5)

See :mod:`aiobpf.operators._core` for how operators compose and push work into the kernel.
"""

from ._cgroups import filter_cgroup
from ._core import (
    Operator,
    Pipeline,
    Stream,
    filter,
    filter_comm,
    filter_descendants,
    filter_pid,
    filter_uid,
    map,
    pipe,
)
from ._histogram import Histogram, histograms, keyed_histograms
from ._routing import Lost, Policy, Router, View, ViewStats, route
from ._streams import Merge, batch, merge
from ._windows import WindowCount, WindowCounter, top_n, window_count

__all__ = [
    "Histogram",
    "Lost",
    "Merge",
    "Operator",
    "Pipeline",
    "Policy",
    "Router",
    "Stream",
    "View",
    "ViewStats",
    "WindowCount",
    "WindowCounter",
    "batch",
    "filter",
    "filter_cgroup",
    "filter_comm",
    "filter_descendants",
    "filter_pid",
    "filter_uid",
    "histograms",
    "keyed_histograms",
    "map",
    "merge",
    "pipe",
    "route",
    "top_n",
    "window_count",
]
