#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Draw docs/BENCHMARKS.md's plots from the benchmarks' JSON results.

    plot-benchmarks.py [--results docs/bench] [--out docs]

Reads what `facegatectl bench peers|gallery|latency --json` wrote and draws:

* ``stage-times.png``    (peers.json) mean time per frame by stage, FaceGate against its peers
* ``gallery-scale.png``  (gallery.json) query latency and recall@1 against gallery size
* ``decision-latency.png`` (latency.json) decision latency per grant and facegated's memory over
  the soak

A missing results file skips its plot with a note; a malformed one is an error (one line, exit 1).
`make plots` runs this in its own virtual environment (scripts/requirements-plots.txt).
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

STAGES = (  # (key in the JSON, legend)
    ("decode", "decode"),
    ("detect", "detect"),
    ("track", "track"),
    ("embed (frames with faces)", "align + embed"),
    ("match", "match"),
    ("match (frames with faces)", "match"),
)


class PlotError(Exception):
    """A problem worth a one-line message."""


def load(path: Path):
    if not path.is_file():
        print(f"plot-benchmarks: {path} not found, its plot is skipped (run the benchmark that writes it)")
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PlotError(f"{path}: not JSON: {e}") from e


def save(fig, path: Path) -> None:
    fig.tight_layout()
    # Fixed metadata so an unchanged plot gives an unchanged file.
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    print(f"plot-benchmarks: wrote {path}")


def plot_stage_times(results: dict, path: Path) -> None:
    """Stacked bars: mean milliseconds per frame spent in each stage, one bar per run, so the
    bar's length is the time per frame and its parts show where it goes."""
    runs = results["runs"]
    labels = [r["label"] for r in runs]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(runs) + 1.8))
    left = [0.0] * len(runs)
    seen = set()
    for key, legend in STAGES:
        widths = []
        for r in runs:
            stage = r["stages"].get(key)
            widths.append(stage["total_ms"] / r["frames"] if stage else 0.0)
        if not any(widths):
            continue
        ax.barh(labels, widths, left=left, label=None if legend in seen else legend,
                color=f"C{[s[1] for s in STAGES].index(legend)}")
        seen.add(legend)
        left = [a + b for a, b in zip(left, widths)]
    for y, r in enumerate(runs):
        ax.text(left[y] + 0.3, y, f"{r['fps']:.0f} fps", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean ms per frame in each stage (wall time of the whole run: 1000 / fps)")
    ax.set_title(
        f"Per-frame time by stage on {Path(results['video']).name}\n"
        f"detector input {results['input_size']} px, {results['threads']} threads for every engine",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper right")
    ax.set_xlim(0, max(left) * 1.18)
    save(fig, path)


def plot_gallery_scale(results: dict, path: Path) -> None:
    rows = results["results"]
    sizes = [r["people"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(sizes, [r["query_ms"]["median"] for r in rows], "o-", label="query median")
    ax.plot(sizes, [r["query_ms"]["p99"] for r in rows], "s--", label="query p99")
    ax.axhline(2.0, color="grey", lw=0.8, ls=":", label="target p99 2 ms")
    ax.set_xscale("log")
    ax.set_ylim(0, max(2.2, max(r["query_ms"]["p99"] for r in rows) * 1.3))
    ax.set_xlabel("identities in the gallery")
    ax.set_ylabel("ms per query (one query at a time)")
    for r in rows:
        note = f"{r['index_type']}\n{r['memory_bytes_per_person']:.0f} B/person"
        ax.annotate(note, (r["people"], r["query_ms"]["p99"]), textcoords="offset points",
                    xytext=(0, 10), ha="center", fontsize=7)
    recall = ax.twinx()
    recalls = [r["synthetic"]["recall_at_1"] for r in rows]
    recall.plot(sizes, recalls, "^-", color="C2", label="recall@1 (synthetic queries)")
    recall.axhline(0.99, color="C2", lw=0.8, ls=":", label="target recall@1 0.99")
    recall.set_ylabel("recall@1 against exact search", color="C2")
    recall.set_ylim(min(0.95, min(recalls) - 0.01), 1.002)
    lines = ax.get_legend_handles_labels()
    more = recall.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center left")
    ax.set_title("Gallery query latency and recall against size", fontsize=10)
    save(fig, path)


def plot_decision_latency(results: dict, path: Path) -> None:
    videos = results["videos"]
    fig, (ax, mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, video in enumerate(videos):
        latencies = sorted(video["latencies_ms"])
        if not latencies:
            continue
        ranks = [(k + 1) / len(latencies) for k in range(len(latencies))]
        ax.step(latencies, ranks, where="post", label=f"{video['name']} ({len(latencies)} grants)", color=f"C{i}")
    ax.axvline(150, color="grey", lw=0.8, ls=":", label="target p99 150 ms")
    ax.set_xlabel("face fully visible -> unlock, ms")
    ax.set_ylabel("fraction of grants")
    ax.set_title("Decision latency (cumulative)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    for i, video in enumerate(videos):
        samples = video.get("rss_samples") or []
        if samples:
            mem.plot([s["t_s"] / 60 for s in samples], [s["rss_kib"] / 1024 for s in samples],
                     label=video["name"], color=f"C{i}")
    mem.set_xlabel("minutes into the run")
    mem.set_ylabel("facegated RSS, MiB")
    mem.set_ylim(bottom=0)
    mem.set_title("facegated memory over the run", fontsize=10)
    mem.legend(fontsize=8, loc="lower right")
    save(fig, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("docs/bench"), help="directory of the JSON results")
    ap.add_argument("--out", type=Path, default=Path("docs"), help="directory for the PNG files")
    args = ap.parse_args()
    plots = (
        ("peers.json", "stage-times.png", plot_stage_times),
        ("gallery.json", "gallery-scale.png", plot_gallery_scale),
        ("latency.json", "decision-latency.png", plot_decision_latency),
    )
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for source, target, draw in plots:
            results = load(args.results / source)
            if results is None:
                continue
            try:
                draw(results, args.out / target)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
                raise PlotError(f"{args.results / source}: unexpected content ({type(e).__name__}: {e})") from e
    except PlotError as e:
        print(f"plot-benchmarks: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
