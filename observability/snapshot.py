"""Draw the dashboard's rows and panels from a Prometheus into one PNG (Grafana's layout, matplotlib's drawing).

    .venv/bin/python -m observability.snapshot --prometheus http://127.0.0.1:9090 --minutes 15 --output dash.png

Each panel of observability/dashboard.py is drawn where the dashboard places it (dashboard.layout(), under its
row's title) and queried exactly as Grafana would (query_range for time series, instant queries for stats and the
score distribution), so the picture shows what the dashboard shows.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from observability import dashboard

MAX_LEGEND = 8


def query(client: httpx.Client, expr: str, at: float) -> list[dict[str, Any]]:
    """An instant query's result vector."""
    answer = client.get("/api/v1/query", params={"query": expr, "time": at}).raise_for_status().json()
    return answer["data"]["result"]


def query_range(client: httpx.Client, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    """A range query's result matrix."""
    params = {"query": expr, "start": start, "end": end, "step": step}
    return client.get("/api/v1/query_range", params=params).raise_for_status().json()["data"]["result"]


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat with {{label}} placeholders filled in."""
    if not template or template == "__auto":
        return ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__") or "value"
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    while "{{" in text and "}}" in text:
        head, rest = text.split("{{", 1)
        text = head + rest.split("}}", 1)[1]
    return text.strip()


def _format(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.2f}%"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "bytes":
        return f"{value / 2**20:.0f} MiB"
    return f"{value:.3g}"


def _stat(ax: Any, panel: dashboard.Panel, client: httpx.Client, end: float) -> None:
    texts = []
    mapped = {value: text for value, text, _ in panel.mappings}
    for q in panel.queries:
        for series in query(client, q.expr, end):
            value = float(series["value"][1])
            if panel.text_mode == "name":
                texts.append(legend(q.legend, series["metric"]))
            else:
                texts.append(mapped.get(f"{value:g}", _format(value, panel.unit)))
    colour = "#d9f2d9"
    if panel.mappings and any(text in ("DOWN", "NOT READY") for text in texts):
        colour = "#f7c6c6"
    ax.set_facecolor(colour)
    ax.text(0.5, 0.45, "\n".join(texts) or "no data", ha="center", va="center", fontsize=14, weight="bold")
    ax.set_xticks([])
    ax.set_yticks([])


def _distribution(ax: Any, panel: dashboard.Panel, client: httpx.Client, end: float) -> None:
    for q, style in zip(panel.queries, ("o-", "s--"), strict=False):
        points = sorted((float(s["metric"]["le"]), float(s["value"][1])) for s in query(client, q.expr, end))
        if points:
            name = q.legend.split(" ", 1)[0]
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=name, markersize=3)
    ax.set_xlabel("predicted probability (bucket bound le)", fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")


def _bars(ax: Any, panel: dashboard.Panel, client: httpx.Client, end: float) -> None:
    """A bar gauge of named values (fields' PSI, live metrics): one horizontal bar per series, in query order."""
    bars = [
        (legend(q.legend, s["metric"]), float(s["value"][1])) for q in panel.queries for s in query(client, q.expr, end)
    ]
    if not bars:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=12, transform=ax.transAxes)
    ax.barh([name for name, _ in reversed(bars)], [value for _, value in reversed(bars)], color="#6fa8dc")
    for threshold, colour in panel.thresholds[1:]:
        if threshold is not None:
            ax.axvline(threshold, color=colour, linewidth=0.8, linestyle=":")
    ax.tick_params(labelsize=6)


def _timeseries(ax: Any, panel: dashboard.Panel, client: httpx.Client, start: float, end: float, step: float) -> None:
    right = None
    shown = 0
    for q in panel.queries:
        target = ax
        if q.right_axis_unit:
            right = right or ax.twinx()
            target = right
        for series in query_range(client, q.expr, start, end, step):
            points = [(float(t), float(v)) for t, v in series["values"]]
            times = [datetime.fromtimestamp(t) for t, _ in points]
            label = legend(q.legend, series["metric"]) if shown < MAX_LEGEND else None
            target.plot(times, [v for _, v in points], linestyle="--" if q.right_axis_unit else "-", label=label)
            shown += 1
    for threshold, _ in panel.thresholds[1:]:
        if threshold is not None:
            ax.axhline(threshold, color="red", linewidth=0.7, linestyle=":")
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
        right.set_ylabel(panel.queries[-1].right_axis_unit, fontsize=7)
        right.tick_params(labelsize=6)
    if handles:
        ax.legend(handles, labels, fontsize=6, loc="upper left", ncol=2)
    ax.set_ylabel(panel.unit if panel.unit != "short" else "", fontsize=7)
    ax.tick_params(labelsize=6)
    ax.xaxis.set_major_formatter(_time_formatter())


def _time_formatter() -> Any:
    from matplotlib.dates import DateFormatter

    return DateFormatter("%H:%M:%S")


def draw(prometheus: str, start: float, end: float, output: Path, step: float = 2.0) -> Path:
    """Query every panel between start and end (Unix seconds) and save the rows of panels as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    places = dashboard.layout()
    rows = max(y + h for _, (_, y, _, h) in places)
    figure = plt.figure(figsize=(24, rows * 0.55))
    grid = figure.add_gridspec(rows, 24, hspace=3.5, wspace=1.6, top=0.97, bottom=0.02, left=0.03, right=0.97)
    with httpx.Client(base_url=prometheus, timeout=30) as client:
        for item, (x, y, w, h) in places:
            ax = figure.add_subplot(grid[y : y + h, x : x + w])
            if isinstance(item, dashboard.Row):
                ax.axis("off")
                ax.text(0, 0, item.title, fontsize=11, weight="bold", va="bottom")
                continue
            ax.set_title(item.title, fontsize=9, loc="left")
            if item.kind == "stat":
                _stat(ax, item, client, end)
            elif item.kind == "bargauge" and "{{le}}" in item.queries[0].legend:
                _distribution(ax, item, client, end)
            elif item.kind == "bargauge":
                _bars(ax, item, client, end)
            else:
                _timeseries(ax, item, client, start, end, step)
    stamp = f"{datetime.fromtimestamp(start):%Y-%m-%d %H:%M:%S} - {datetime.fromtimestamp(end):%H:%M:%S}"
    figure.suptitle(f"Readmission service dashboard (Prometheus {prometheus}, {stamp})", fontsize=12, y=0.995)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=60, bbox_inches="tight")
    plt.close(figure)
    return output


def main(argv: list[str] | None = None) -> int:
    """Draw the last --minutes of the dashboard from --prometheus into --output."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--step", type=float, default=5)
    parser.add_argument("--output", type=Path, default=Path("dashboard.png"))
    args = parser.parse_args(argv)
    end = time.time()
    print(draw(args.prometheus, end - args.minutes * 60, end, args.output, args.step))
    return 0


if __name__ == "__main__":
    sys.exit(main())
