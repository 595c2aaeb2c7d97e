"""The folded metrics state in Prometheus's text format (prometheus-client's exposition).

Counters, histograms and gauges come from the state as `functions.common.telemetry.METRICS`
defines them; derived series are added here: the online accuracy per model version (the
share of accepted feedback that confirms the prediction), the production version (an info
metric, read live from the registry's alias) and the state's own freshness.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from functions.common.telemetry import METRICS, parse_key, series_key


class StateCollector:
    def __init__(self, state: dict, production_version: str, backlog: bool = False):
        self.state, self.production_version, self.backlog = state, production_version, backlog

    def _series(self, kind: str, name: str) -> list[tuple[dict[str, str], Any]]:
        """A metric's series of one kind: (labels, value) with the value as the state's JSON
        holds it (a counter's float, a histogram's {"b", "sum", "n"}, a gauge's [value, at])."""
        found = []
        for key, value in self.state[kind].items():
            metric_name, labels = parse_key(key)
            if metric_name == name:
                found.append((labels, value))
        return found

    def collect(self) -> Iterator[Metric]:
        for m in METRICS.values():
            names = list(m.labels)
            if m.kind == "counter":
                counter = CounterMetricFamily(m.name, m.help, labels=names)
                seen = self._series("counters", m.name)
                keys = {series_key(m.name, labels) for labels, _ in seen}
                seen += [(k, 0.0) for k in m.known if series_key(m.name, k) not in keys]
                for labels, value in sorted(seen, key=lambda s: sorted(s[0].items())):
                    counter.add_metric([labels[n] for n in names], value)
                yield counter
            elif m.kind == "histogram":
                histogram = HistogramMetricFamily(m.name, m.help, labels=names)
                for labels, h in self._series("histograms", m.name):
                    cumulative: list[tuple[str, float]] = []
                    running = 0
                    for bound, count in zip([*m.buckets, float("inf")], h["b"], strict=True):
                        running += count
                        le = "+Inf" if bound == float("inf") else repr(float(bound))
                        cumulative.append((le, running))
                    histogram.add_metric([labels[n] for n in names], cumulative, h["sum"])
                yield histogram
            else:
                gauge = GaugeMetricFamily(m.name, m.help, labels=names)
                for labels, (value, _at) in self._series("gauges", m.name):
                    gauge.add_metric([labels[n] for n in names], value)
                yield gauge
        yield self._online_accuracy()
        info = InfoMetricFamily("inktex_production_model", "The model the production alias names.")
        info.add_metric([], {"version": self.production_version or "none"})
        yield info
        folded = CounterMetricFamily(
            "inktex_metrics_deltas_folded", "Metric deltas folded into the durable state."
        )
        folded.add_metric([], self.state.get("deltas_folded", 0))
        yield folded
        backlog = GaugeMetricFamily(
            "inktex_metrics_backlog",
            "1 when the last compaction was full: more deltas wait for the next scrape.",
        )
        backlog.add_metric([], 1.0 if self.backlog else 0.0)
        yield backlog
        updated = self.state.get("updated_at")
        if updated:
            stamp = GaugeMetricFamily(
                "inktex_metrics_updated_timestamp_seconds", "When the state was last compacted."
            )
            stamp.add_metric([], datetime.fromisoformat(updated).timestamp())
            yield stamp

    def _online_accuracy(self) -> Metric:
        family = GaugeMetricFamily(
            "inktex_online_accuracy",
            "Share of accepted feedback confirming the prediction, by model version (all time).",
            labels=["model_version"],
        )
        confirmed = {
            labels["model_version"]: value
            for labels, value in self._series("counters", "inktex_feedback_confirmations_total")
        }
        for labels, assessed in self._series("counters", "inktex_feedback_assessed_total"):
            version = labels["model_version"]
            if assessed:
                family.add_metric([version], confirmed.get(version, 0.0) / assessed)
        return family


def exposition(state: dict, production_version: str, backlog: bool = False) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(state, production_version, backlog))
    return generate_latest(registry)
