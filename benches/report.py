#!/usr/bin/env python3
"""Summarise the criterion results of `make bench` as ratios.

Reads target/criterion/*/new/estimates.json (the run just made) and prints,
for each verdict shape, our time against the reference path and against the
header-only floor measured in the same run, then the role-table figures, and
checks the targets the project set itself. Exits 0 either way: it reports,
it does not gate.
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")


def est(*path):
    f = os.path.join(ROOT, *path, "new", "estimates.json")
    try:
        with open(f) as fh:
            return json.load(fh)["median"]["point_estimate"]  # nanoseconds
    except (OSError, KeyError, ValueError):
        return None


def fmt(ns):
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main():
    if not os.path.isdir(ROOT):
        print("no criterion results: run `make bench` first", file=sys.stderr)
        return 0
    checks = []
    print("(a) verdict per frame: median times; ratios from the same run")
    print(f"{'shape':<12}{'reference':>12}{'ours':>12}{'floor':>12}{'ref/ours':>11}{'ours/floor':>12}")
    for entries in (1, 16, 256):
        per_size = {}
        for label in ("1KiB", "64KiB", "1MiB"):
            shape = f"{entries}x{label}"
            r, o, f = est("verdict", "reference", shape), est("verdict", "ours", shape), est("verdict", "floor", shape)
            if o is None:
                continue
            per_size[label] = o
            speedup = r / o if r else None
            over_floor = o / f if f else None
            print(f"{shape:<12}{fmt(r):>12}{fmt(o):>12}{fmt(f):>12}"
                  f"{(f'{speedup:,.0f}x' if speedup else '-'):>11}{(f'{over_floor:.2f}x' if over_floor else '-'):>12}")
            if label == "1KiB" and speedup:
                checks.append((f"{shape}: >= 20x faster than reference", speedup >= 20, f"{speedup:,.0f}x"))
            if label == "1MiB" and speedup:
                checks.append((f"{shape}: >= 2000x faster than reference", speedup >= 2000, f"{speedup:,.0f}x"))
            if over_floor:
                checks.append((f"{shape}: within 3x of the floor", over_floor <= 3, f"{over_floor:.2f}x"))
        if "1KiB" in per_size and "1MiB" in per_size:
            ratio = per_size["1MiB"] / per_size["1KiB"]
            f1, f2 = est("verdict", "floor", f"{entries}x1KiB"), est("verdict", "floor", f"{entries}x1MiB")
            floor_note = f" (the floor itself: {f2 / f1:.2f}x)" if f1 and f2 else ""
            checks.append((f"{entries} entries: 1MiB within 1.2x of 1KiB", ratio <= 1.2, f"{ratio:.2f}x{floor_note}"))
    one = est("verdict", "ours", "1x1KiB")
    if one is not None:
        checks.append(("1x1 verdict under 50 ns", one < 50, fmt(one)))

    print("\n(b) role-table lookup (median)")
    for label in ("1K", "1M"):
        print(f"  {label:>3} partitions: cached reader {fmt(est('lookup', 'reader', label))},"
              f" one-off snapshot {fmt(est('lookup', 'one_off', label))}")

    print("\n(c) two readers judging a 1x16 request, while a writer applies changes")
    quiet, busy = est("contention", "reader_no_writer"), est("contention", "reader_with_writer")
    print(f"  reader latency without writer {fmt(quiet)}, with writer {fmt(busy)}"
          + (f" ({busy / quiet:.2f}x)" if quiet and busy else ""))
    w = est("contention", "writer_10k_changes_with_readers")
    print(f"  writer: 10k incremental changes at 1M partitions in {fmt(w)}"
          + (f" ({fmt(w / 10_000)} per change)" if w else ""))

    print("\ntargets")
    for name, ok, value in checks:
        print(f"  [{'ok' if ok else 'MISS'}] {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
