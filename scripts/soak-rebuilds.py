#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Memory across pipeline rebuilds: the real facegated on a short clip, rebuilding its pipeline at
every end of stream, with its resident set size sampled at each rebuild into a CSV (`make soak`;
docs/RELIABILITY.md records the curves).

facegated runs as the demo runs it (config/demo.toml, the file pipeline, a simulated gate, a
private dbus-daemon, a gallery enrolled from a photo) with exit_on_eos = false and a 100-200 ms
back-off, so each end of the clip tears the pipeline down and builds a new one. The sample is
taken when facegated logs "stream ended; restarting": the old pipeline is at NULL and gone,
the new one not yet built. It stops after --rebuilds rebuilds (or --timeout seconds) and prints
the growth per rebuild over the first and the second half of the run.

Standard library only; everything it starts (dbus-daemon, facegated) it ends, by process id.
"""

import argparse
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESTART = re.compile(r"stream ended; restarting")
RUNNING = re.compile(r"pipeline running")


def fail(message):
    print(f"soak: error: {message}", file=sys.stderr)
    sys.exit(1)


def assets():
    return Path(os.environ.get("FACEGATE_ASSETS", REPO / ".assets")).resolve()


def memory_kb(pid):
    """VmRSS, RssAnon and RssFile of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                values[name] = int(rest.split()[0])
    return values


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def slope(points):
    """Least-squares KiB per rebuild of (rebuild, rss) points."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den


def start_bus(scratch):
    socket = scratch / "bus"
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address=unix:path={socket}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not socket.exists():
        if bus.poll() is not None or time.monotonic() > deadline:
            bus.kill()
            fail("dbus-daemon did not start (Debian: apt-get install dbus-daemon)")
        time.sleep(0.05)
    return bus, f"unix:path={socket}"


def stop(process, grace=10):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuilds", type=int, default=60, help="stop after this many rebuilds")
    parser.add_argument("--csv", type=Path, required=True, help="where to write the samples")
    parser.add_argument("--build", default="debug", help="target/<BUILD>/facegated (debug or release)")
    parser.add_argument("--video", type=Path, help="the clip (default: walkup_person_b.avi, 3.9 s)")
    parser.add_argument("--pipeline", type=Path, default=REPO / "pipelines/demo.pipeline")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra environment variable for facegated (repeatable)")
    parser.add_argument("--timeout", type=float, help="seconds (default: 15 per rebuild + 60)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")).resolve() / args.build
    facegated, facegatectl = target / "facegated", target / "facegatectl"
    video = args.video or assets() / "videos/walkup_person_b.avi"
    photo = assets() / "photos/person_b_1.jpg"
    models = Path(os.environ.get("FACEGATE_MODEL_DIR", assets() / "models")).resolve()
    ort = Path(os.environ.get("ORT_DYLIB_PATH",
                              assets() / "onnxruntime/libonnxruntime.so.1.32.0")).resolve()
    for what, path in [("facegated", facegated), ("facegatectl", facegatectl), ("video", video),
                       ("photo", photo), ("models", models), ("ONNX Runtime", ort)]:
        if not path.exists():
            fail(f"{what} {path} is missing: run `make setup` and `make build`")
    timeout = args.timeout or 15 * args.rebuilds + 60

    scratch = Path(tempfile.mkdtemp(prefix="facegate-soak-"))
    env = dict(os.environ, ORT_DYLIB_PATH=str(ort), FACEGATE_MODEL_DIR=str(models))
    enrolled = subprocess.run(
        [facegatectl, "enroll", "--gallery", scratch / "gallery", "--id", "person-b", photo],
        env=env, capture_output=True, text=True,
    )
    if enrolled.returncode != 0:
        fail(f"facegatectl enroll failed: {enrolled.stderr.strip()}")

    bus, address = start_bus(scratch)
    env.update({
        "FACEGATE_LOG": "info",
        "FACEGATE_PIPELINE__FILE": str(args.pipeline.resolve()),
        "FACEGATE_PIPELINE__VARIABLES__VIDEO": str(video.resolve()),
        "FACEGATE_PIPELINE__EXIT_ON_EOS": "false",
        "FACEGATE_PIPELINE__RESTART_MIN_MS": "100",
        "FACEGATE_PIPELINE__RESTART_MAX_MS": "200",
        "FACEGATE_MODELS__DIR": str(models),
        "FACEGATE_MODELS__ORT_LIBRARY": str(ort),
        "FACEGATE_GALLERY__DIR": str(scratch / "gallery"),
        "FACEGATE_JOURNAL__PATH": str(scratch / "journal.sqlite"),
        "FACEGATE_GATE__ACTIONS_LOG": str(scratch / "gate-actions.jsonl"),
        "FACEGATE_DBUS__BUS": address,
    })
    for extra in args.env:
        name, sep, value = extra.partition("=")
        if not sep:
            fail(f"--env {extra!r}: expected NAME=VALUE")
        env[name] = value

    log_path = scratch / "facegated.log"
    rows = []
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log_out:
        service = subprocess.Popen(
            [facegated, "--config", REPO / "config/demo.toml"],
            env=env, stdout=subprocess.DEVNULL, stderr=log_out, cwd=REPO,
        )
    print(f"soak: facegated {service.pid} on {video.name}, {args.rebuilds} rebuilds; log {log_path}")
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log_in:
            pending = ""
            first_run_sampled = False
            while len(rows) <= args.rebuilds:
                if service.poll() is not None:
                    fail(f"facegated exited ({service.returncode}) after {len(rows)} samples; "
                         f"log: {log_path}")
                if time.monotonic() - started > timeout:
                    fail(f"{timeout:.0f} s passed with {len(rows)} samples; log: {log_path}")
                chunk = log_in.read()
                if not chunk:
                    time.sleep(0.02)
                    continue
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    sample = None
                    if RUNNING.search(line) and not first_run_sampled:
                        # The baseline: models loaded, the first pipeline playing.
                        first_run_sampled = True
                        sample = 0
                    elif RESTART.search(line):
                        sample = len(rows)
                    if sample is None:
                        continue
                    memory = memory_kb(service.pid)
                    rows.append({
                        "rebuild": sample,
                        "seconds": round(time.monotonic() - started, 2),
                        "rss_kib": memory["VmRSS"],
                        "anon_kib": memory["RssAnon"],
                        "file_kib": memory["RssFile"],
                        "threads": threads(service.pid),
                    })
                    if sample % 10 == 0:
                        print(f"soak: rebuild {sample:4}: RSS {memory['VmRSS'] / 1024:7.1f} MiB, "
                              f"{rows[-1]['threads']} threads")
    finally:
        stop(service)
        stop(bus)

    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="", encoding="ascii") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    points = [(row["rebuild"], row["rss_kib"]) for row in rows]
    half = len(points) // 2
    first, last = rows[0]["rss_kib"] / 1024, rows[-1]["rss_kib"] / 1024
    print(f"soak: {len(rows) - 1} rebuilds in {rows[-1]['seconds']:.0f} s: RSS {first:.1f} -> "
          f"{last:.1f} MiB; growth {slope(points[:half]):.0f} KiB/rebuild in the first half, "
          f"{slope(points[half:]):.0f} KiB/rebuild in the second; samples: {args.csv}")
    if args.keep:
        print(f"soak: scratch kept in {scratch}")
    else:
        subprocess.run(["rm", "-rf", scratch], check=False)


if __name__ == "__main__":
    main()
