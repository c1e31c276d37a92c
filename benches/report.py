#!/usr/bin/env python3
"""Summarise the criterion results of `make bench` as ratios.

Reads target/criterion/*/new/ (the run just made) and prints, for each
verdict shape, our time against the reference path and against the
header-only floor measured in the same run (fastest samples: see the Timing
note in benches/verdict.rs; criterion's medians are shown beside them, and
the paired ratios of ours and walk to the floor that verdict.rs writes to
target/criterion/verdict/paired/), then
the role-table figures, and checks the issue's targets. Exits 0 either way:
it reports, it does not gate.
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


def fastest(*path):
    """The fastest sample's time per iteration (see benches/verdict.rs, Timing)."""
    f = os.path.join(ROOT, *path, "new", "sample.json")
    try:
        with open(f) as fh:
            s = json.load(fh)
        return min(t / i for t, i in zip(s["times"], s["iters"]))
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        return None


def paired(shape):
    """Ratios from alternating chunks (see benches/verdict.rs, Paired ratios)."""
    f = os.path.join(ROOT, "verdict", "paired", f"{shape}.json")
    try:
        with open(f) as fh:
            return json.load(fh)
    except (OSError, ValueError):
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
    print("(a) verdict per frame: fastest sample of each benchmark, every figure from this one run;")
    print("    'paired' columns: median [quartiles] of ratios from alternating chunks (benches/verdict.rs)")
    print(f"{'shape':<11}{'reference':>10}{'ours':>9}{'walk':>9}{'floor':>9}{'ref/ours':>10}"
          f"{'ref/ours':>10}{'ours/floor':>11}{'ours/floor, paired':>25}{'walk/floor, paired':>25}")
    print(f"{'':<11}{'':>10}{'':>9}{'':>9}{'':>9}{'':>10}{'(medians)':>10}{'(fastest)':>11}")
    for entries in (1, 16, 256):
        per_size = {}
        floors = {}
        for label in ("1KiB", "64KiB", "1MiB"):
            shape = f"{entries}x{label}"
            r, o, w, f = (fastest("verdict", name, shape) for name in ("reference", "ours", "walk", "floor"))
            if o is None:
                continue
            per_size[label], floors[label] = o, f
            rm, om = est("verdict", "reference", shape), est("verdict", "ours", shape)
            speedup = r / o if r else None
            fastest_floor = o / f if f else None
            median_speedup = rm / om if rm and om else None
            pair = paired(shape)

            def spread(key):
                if not pair:
                    return "-"
                q = pair[key]
                return f"{q['median']:.2f}x [{q['p25']:.2f}-{q['p75']:.2f}]"

            print(f"{shape:<11}{fmt(r):>10}{fmt(o):>9}{fmt(w):>9}{fmt(f):>9}"
                  f"{(f'{speedup:,.0f}x' if speedup else '-'):>10}{(f'{median_speedup:,.0f}x' if median_speedup else '-'):>10}"
                  f"{(f'{fastest_floor:.2f}x' if fastest_floor else '-'):>11}{spread('ours_floor'):>25}{spread('walk_floor'):>25}")
            # Within 3x of the floor: the paired median when there is one
            # (both sides timed at the same machine speed), else the ratio
            # of fastest samples.
            over_floor = pair["ours_floor"]["median"] if pair else fastest_floor
            how = "paired median" if pair else "fastest samples"
            if label == "1KiB" and speedup:
                checks.append((f"{shape}: >= 20x faster than reference", speedup >= 20, f"{speedup:,.0f}x"))
            if label == "1MiB" and speedup:
                checks.append((f"{shape}: >= 2000x faster than reference", speedup >= 2000, f"{speedup:,.0f}x"))
            if over_floor:
                checks.append((f"{shape}: within 3x of the floor", over_floor <= 3, f"{over_floor:.2f}x ({how})"))
        if "1KiB" in per_size and "1MiB" in per_size:
            ratio = per_size["1MiB"] / per_size["1KiB"]
            f1, f2 = floors.get("1KiB"), floors.get("1MiB")
            floor_note = f" (the floor itself: {f2 / f1:.2f}x)" if f1 and f2 else ""
            checks.append((f"{entries} entries: 1MiB within 1.2x of 1KiB", ratio <= 1.2, f"{ratio:.2f}x{floor_note}"))
    one = fastest("verdict", "ours", "1x1KiB")
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

    spu = os.path.join(ROOT, "..", "spu-bench.json")
    if os.path.exists(spu):
        with open(spu) as fh:
            b = json.load(fh)
        on, off = b["records_per_sec_guard_on"], b["records_per_sec_guard_off"]
        anchor = 0.75e6  # Fluvio's own SPU, upper end of the range measured here (see README)
        print("\n(spu) produce through the server process over loopback, 100-byte records, ~16 KiB batches")
        print(f"  guard on {on:,.0f} records/s ({b['mb_per_sec_guard_on']:.0f} MB/s), guard off {off:,.0f} records/s")
        print(f"  guard cost {(off - on) / off * 100:+.2f}% (run-to-run spread {b['spread_on_pct']}% / {b['spread_off_pct']}%)")
        print(f"  rejected round trip p50 {b['rejected_p50_us']} us, p99 {b['rejected_p99_us']} us; peak RSS {b['peak_rss_kib'] / 1024:.1f} MiB")
        checks.append(("spu: >= 1.5x Fluvio's 0.75 M records/s anchor", on >= 1.5 * anchor, f"{on / anchor:.1f}x"))
        official = b.get("official_client_records_per_sec")
        if official:
            print(f"  through the official fluvio producer (local cluster): {official:,.0f} records/s"
                  f" ({official / on:.2f}x the raw loopback client)")
        con, coff = b["cpu_ns_per_record_on"], b["cpu_ns_per_record_off"]
        cost = (con - coff) / coff * 100
        noise = max(b["cpu_spread_on_pct"], b["cpu_spread_off_pct"])
        print(f"  server CPU per record: on {con} ns, off {coff} ns: guard cost {cost:+.2f}% (spread {noise}%)")
        verdict = cost < 1 and abs(cost) >= noise
        note = f"{cost:+.2f}% CPU per record" + ("" if abs(cost) >= noise else f", within the {noise}% run-to-run spread: not resolved")
        checks.append(("spu: guard costs < 1% on the accepted path", verdict, note))
        checks.append(("spu: peak RSS <= Fluvio's 18 MB", b["peak_rss_kib"] * 1024 <= 18e6, f"{b['peak_rss_kib'] / 1024:.1f} MiB"))

    load_file = os.path.join(ROOT, "..", "spu-load.json")
    if os.path.exists(load_file):
        with open(load_file) as fh:
            load = json.load(fh)
        print("\n(spu_load) commit scaling: 1-record requests, 4 in flight per connection, 8 partitions, --fsync on-commit")
        print("  build   conns  acks  requests/s    p99 us   server CPU us/request")
        for build in ("after", "before"):
            if build not in load:
                continue
            for conns in (1, 8, 64):
                for acks, key in (("-1", "all"), ("1", "one")):
                    r = load[build]["commit"].get(f"c{conns}_acks{key}")
                    if r:
                        print(f"  {build:<7} {conns:>5} {acks:>5} {r['rps']:>11,.0f} {r['p99_us']:>9,.0f} {r['cpu_us']:>10.1f}")
        after = load["after"]["commit"]
        if "c64_acksall" in after:
            ratio = after["c64_acksall"]["rps"] / after["c64_acksone"]["rps"]
            checks.append(("spu_load: at 64 connections acks -1 >= half the requests/s of acks 1",
                           ratio >= 0.5, f"{ratio:.2f}x"))
        if "before" in load and "c64_acksall" in after:
            b = load["before"]["commit"]["c64_acksall"]
            a = after["c64_acksall"]
            print(f"  acks -1 at 64 connections: {a['rps'] / b['rps']:.2f}x the requests/s of the pre-reshape build, "
                  f"{a['cpu_us'] / b['cpu_us']:.2f}x its CPU per request")
            checks.append(("spu_load: acks -1 at 64 connections at no more CPU per request than before",
                           a["cpu_us"] <= b["cpu_us"], f"{a['cpu_us']:.1f} vs {b['cpu_us']:.1f} us"))
        for build in ("after", "before"):
            b = load.get(build, {}).get("batches")
            if b:
                print(f"  {build:<7} 16 KiB batches, 2 connections x 8 in flight, acks 1: {b['records_per_sec']:,.0f} records/s, "
                      f"server CPU {b['cpu_ns_per_record']:.0f} ns/record")
        print("\n(spu_load) head-of-line: 1-record requests on one connection, 8 others pushing 1 MiB batches, --fsync always")
        for build in ("after", "reference", "before"):
            if not load.get(build, {}).get("hol"):
                continue
            hol = load[build]["hol"]
            idle, busy = hol["idle"], hol["busy"]
            heavy = f"; heavy writers {hol['heavy_mib_per_sec']:,.0f} MiB/s" if "heavy_mib_per_sec" in hol else ""
            print(f"  {build:<9} idle p50 {idle['p50_us']:,.0f} us p99 {idle['p99_us']:,.0f} us; busy p50 {busy['p50_us']:,.0f} us "
                  f"p99 {busy['p99_us']:,.0f} us ({busy['p99_us'] / idle['p99_us']:.1f}x idle p99){heavy}")
            paced = hol.get("busy_paced")
            if paced:
                share = ""
                if hol.get("heavy_mib_per_sec"):
                    share = f", {hol['paced_heavy_mib_per_sec'] / hol['heavy_mib_per_sec']:.2f}x the unpaced"
                print(f"  {'':<9} busy with --flush-target-us 1000: p50 {paced['p50_us']:,.0f} us p99 {paced['p99_us']:,.0f} us "
                      f"({paced['p99_us'] / idle['p99_us']:.1f}x idle p99); heavy writers {hol['paced_heavy_mib_per_sec']:,.0f} MiB/s{share}")
        if "heavy_mib_per_sec" in load.get("reference", {}).get("hol", {}) and "heavy_mib_per_sec" in load["after"]["hol"]:
            a, r = load["after"]["hol"], load["reference"]["hol"]
            print(f"  this build against the reference (SPU_LOAD_REFERENCE): busy p99 {a['busy']['p99_us'] / r['busy']['p99_us']:.2f}x, "
                  f"heavy writers' MiB/s {a['heavy_mib_per_sec'] / r['heavy_mib_per_sec']:.2f}x")
        disk = load.get("disk")
        if disk:
            di, db = disk["idle"], disk["busy"]
            print(f"  disk    (no SPU: 100-byte append + sync, beside 8 threads appending 1 MiB + sync) idle p99 {di['p99_us']:,.0f} us; "
                  f"busy p99 {db['p99_us']:,.0f} us ({db['p99_us'] / di['p99_us']:.1f}x idle p99)")
        if load["after"]["hol"]:
            idle, busy = load["after"]["hol"]["idle"], load["after"]["hol"]["busy"]
            note = f"{busy['p99_us'] / idle['p99_us']:.1f}x"
            if disk:
                note += f" (the disk alone: {disk['busy']['p99_us'] / disk['idle']['p99_us']:.1f}x; SPU busy p99 {busy['p99_us'] / disk['busy']['p99_us']:.2f}x the disk's)"
            checks.append(("spu_load: light p99 under load <= 5x idle p99, default (unpaced) SPU", busy["p99_us"] <= 5 * idle["p99_us"], note))
            paced = load["after"]["hol"].get("busy_paced")
            if paced:
                checks.append(("spu_load: light p99 under load <= 5x idle p99, --flush-target-us 1000",
                               paced["p99_us"] <= 5 * idle["p99_us"], f"{paced['p99_us'] / idle['p99_us']:.1f}x"))

    mirror_file = os.path.join(ROOT, "..", "mirroring.json")
    if os.path.exists(mirror_file):
        with open(mirror_file) as f:
            runs = json.load(f)
        print("\n(mirroring) edge -> home, real processes (cargo bench --bench mirroring)")
        for mode in ("tls", "plain"):
            m = runs.get(mode)
            if not m:
                continue
            label = "mutual TLS" if mode == "tls" else "plaintext (--insecure-mirroring)"
            print(f"  {label}:")
            for size in ("100", "1024"):
                r = m.get(f"r{size}")
                if not r:
                    continue
                keep = r["mirror_rps"] / r["produce_rps"]
                cpu = r["cpu_ns_mirrored"] / r["cpu_ns_produced"]
                print(f"    {size:>4}-byte records: edge produce {r['produce_rps']:,.0f}/s, mirrored {r['mirror_rps']:,.0f}/s ({keep:.2f}x); "
                      f"home CPU {r['cpu_ns_mirrored']:.0f} ns/mirrored record vs {r['cpu_ns_produced']:.0f} ns/produced ({cpu:.2f}x)")
                if mode == "tls":
                    checks.append((f"mirroring: {size}-byte records keep up (>= 0.9x produce)", keep >= 0.9, f"{keep:.2f}x"))
                    checks.append((f"mirroring: home CPU per {size}-byte mirrored record <= 1x produced", cpu <= 1.0, f"{cpu:.2f}x"))
            lag = m.get("lag")
            if lag:
                print(f"    lag at half the 100-byte rate ({lag['requests_per_sec']:,} requests/s): p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms")
                if mode == "tls":
                    checks.append(("mirroring: lag p99 < 50 ms at half rate", lag["p99_ms"] < 50, f"{lag['p99_ms']:.1f} ms"))
            rss = m.get("rss")
            if rss and mode == "tls":
                print(f"    home SPU RSS {rss['idle_kib']:,} KiB idle, peak {rss['peak_kib']:,} KiB with two remotes streaming "
                      f"({rss['peak_kib'] / rss['idle_kib']:.2f}x)")
                checks.append(("mirroring: home peak RSS with two remotes < 32 MiB", rss["peak_kib"] < 32 * 1024,
                               f"{rss['peak_kib'] / 1024:.1f} MiB"))
        tls, plain = runs.get("tls", {}).get("r1024"), runs.get("plain", {}).get("r1024")
        if tls and plain:
            # The mirror keeps pace with what the edge acknowledges, and the
            # edge's produce rate (no TLS in it) drifts with the machine
            # between the two halves of the run: compare how close each
            # mode's mirror comes to its own produce rate.
            keep_tls = tls["mirror_rps"] / tls["produce_rps"]
            keep_plain = plain["mirror_rps"] / plain["produce_rps"]
            cost = 1 - keep_tls / keep_plain
            cpu = tls["cpu_ns_mirrored"] / plain["cpu_ns_mirrored"]
            print(f"  TLS at 1 KiB records: mirror/produce {keep_tls:.2f}x against {keep_plain:.2f}x in plaintext "
                  f"(a cost of {cost * 100:.1f}%); home CPU per mirrored record {cpu:.2f}x plaintext's")
            checks.append(("mirroring: TLS costs <= 15% of throughput at 1 KiB", cost <= 0.15, f"{cost * 100:.1f}%"))

    up = est("upgrade", "10k_topics")
    if up is not None:
        print(f"\n(upgrade) 10k topics + 10k partitions from schema 1 to 2: {fmt(up)} (median)")
        checks.append(("upgrade: 10k topics in seconds", up < 60e9, fmt(up)))

    scale_file = os.path.join(ROOT, "..", "control_scale.json")
    if os.path.exists(scale_file):
        with open(scale_file) as f:
            sc = json.load(f)
        print(f"\n(control_scale) one SC, {sc['spus']} SPU control sessions, {sc['partitions']:,} partitions (cargo bench --bench control_scale)")
        for store in ("files", "etcd"):
            r = sc.get(store)
            if not r:
                continue
            a, p, o, c = r["to_all_200"], r["per_spu"], r["to_one"], r["commit_of_201_writes"]
            print(f"  {store:>5}: a role change to all 200 SPUs: p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms over {a['samples']} changes "
                  f"(each SPU: p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms); to one SPU: p50 {o['p50_ms']:.2f} ms, p99 {o['p99_ms']:.2f} ms; "
                  f"the commit itself (201 writes): p50 {c['p50_ms']:.1f} ms")
            checks.append((f"control_scale: one change to 200 SPUs, p99 < 100 ms ({store})", a["p99_ms"] < 100, f"{a['p99_ms']:.1f} ms"))
        proc = sc.get("sc_process", {})
        fleet, resync = proc.get("fleet"), proc.get("resync")
        if resync:
            rs = resync["resync"]
            print(f"  full resync of {resync['partitions']:,} partitions to one SPU after a reconnect: p50 {rs['p50_ms']:.0f} ms, "
                  f"max {rs['max_ms']:.0f} ms over {rs['samples']}; SC RSS {resync['rss_before_kib'] / 1024:.1f} MiB before, "
                  f"peak {resync['peak_rss_kib'] / 1024:.1f} MiB")
            checks.append(("control_scale: full resync of 100k partitions < 1 s", rs["max_ms"] < 1000, f"{rs['max_ms']:.0f} ms"))
        if fleet:
            print(f"  SC with 100k partitions: RSS {fleet['rss_loaded_kib'] / 1024:.1f} MiB loaded, "
                  f"{fleet['rss_serving_kib'] / 1024:.1f} MiB serving 200 SPUs, peak {fleet['peak_rss_kib'] / 1024:.1f} MiB")

    print("\ntargets")
    for name, ok, value in checks:
        print(f"  [{'ok' if ok else 'MISS'}] {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
