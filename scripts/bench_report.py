"""Writes the tables of `scripts/bench` into BENCHMARKS.md between the `bench:begin` and
`bench:end` markers, from the JSON reports the suite left in its work dir.

Arguments: WORK OUT COMMIT CORES DATE LOADAVG LEDGERS LIMIT_USD CRITERION_DIR
"""

import json, pathlib, re, sys

work, out, commit, cores, date, loadavg, ledgers, limit_usd, criterion_dir = sys.argv[1:]
w = pathlib.Path(work)
load = lambda name: json.loads((w / f"{name}.json").read_text())
latency, frontier, streaming, rss = (load(n) for n in ("latency", "frontier", "streaming", "rss"))
quota_latency, quota_rate, cluster = (load(n) for n in ("quota-latency", "quota-rate", "cluster"))
commands = (w / "commands.txt").read_text().strip().splitlines()
criterion_command = (w / "criterion-command.txt").read_text().strip()
ms = lambda us: f"{us / 1000:.3f} ms"
usd = lambda us: f"{us} µs"
num = lambda n: f"{n:,}"


def verdict(checks):
    if not checks["violations"]:
        return "hold"
    return "FAILED: " + "; ".join(v["detail"] for v in checks["violations"])

lines = [
    "<!-- bench:begin (written by scripts/bench; edit outside these markers) -->",
    f"## {date} — `scripts/bench` (commit {commit}), {cores} cores, release build",
    "",
    f"The mock upstream (`floodgate-loadtest upstream`), `floodgate dev` and the load generator",
    f"share this machine's {cores} cores, so every figure includes their contention: read the",
    "throughput figures as a floor for the gateway, not its capacity. The gateway proxies an",
    "`openai_compatible` endpoint `bench` to the mock; latency is measured from each request's",
    "intended send time.",
    f"Load average (1/5/15 min) when the suite started: {loadavg}; anything above 0 is other",
    "work on the machine competing with all three.",
    "",
    "### Added latency at concurrency 1 (`compare`, direct vs through the gateway, interleaved)",
    "",
    "| | p50 | p90 | p99 | p99.9 | req/s |",
    "| --- | --- | --- | --- | --- | --- |",
]
for side in ("direct", "gateway"):
    r = latency[side]
    l = r["latency"]
    lines.append(f"| {side} | {ms(l['p50_us'])} | {ms(l['p90_us'])} | {ms(l['p99_us'])} | {ms(l['p999_us'])} | {r['throughput_rps']:.0f} |")
a = latency["added_latency"]
lines += [
    f"| **added** | {usd(a['p50_us'])} | {usd(a['p90_us'])} | {usd(a['p99_us'])} | {usd(a['p999_us'])} | ratio {latency['throughput_ratio']:.2f} |",
    "",
    "Target: p99 added ≤ 200 µs.",
    "",
    "### Frontier, non-streaming chat through the gateway (`frontier`, open loop)",
    "",
    "| offered req/s | achieved req/s | p99 | errors | held |",
    "| --- | --- | --- | --- | --- |",
]
for s in frontier["steps"]:
    lines.append(f"| {s['rate']:.0f} | {s['throughput_rps']:.0f} | {ms(s['p99_us'])} | {s['error_share'] * 100:.2f}% | {'yes' if s['held'] else 'no'} |")
rate = lambda r: "none" if r is None else f"{r:.0f} req/s"
lines += ["", f"Highest rate that held (p99 ≤ {ms(frontier['p99_bound_us'])}, errors ≤ 1%): **{rate(frontier['highest_held_rate'])}**."]
for t in frontier["thresholds"]:
    lines.append(f"* at p99 ≤ {t['p99_bound_us'] // 1000} ms: {rate(t['rate'])}")
res = frontier.get("resources")
if res:
    lines.append(f"* gateway CPU over the search: {res['cpu_percent']:.0f}% of one core; peak RSS {res['peak_rss_kib'] / 1024:.1f} MiB")
lines += [
    "",
    "Target: ≥ 5,000 req/s per gateway core at p99 added ≤ 1 ms (here the generator and the mock",
    "take part of the same two cores).",
    "",
    "### Streaming TTFT at 100 concurrent streams (`compare --stream`, closed loop)",
    "",
    "| | TTFT p50 | p90 | p99 | p99.9 | streams/s |",
    "| --- | --- | --- | --- | --- | --- |",
]
for side in ("direct", "gateway"):
    r = streaming[side]
    t = r["ttft"]
    lines.append(f"| {side} | {ms(t['p50_us'])} | {ms(t['p90_us'])} | {ms(t['p99_us'])} | {ms(t['p999_us'])} | {r['throughput_rps']:.0f} |")
t = streaming.get("added_ttft") or {}
if t:
    lines.append(f"| **added** | {usd(t['p50_us'])} | {usd(t['p90_us'])} | {usd(t['p99_us'])} | {usd(t['p999_us'])} | ratio {streaming['throughput_ratio']:.2f} |")
lines += ["", "Target: TTFT added ≤ 500 µs.", "", "### RSS and CPU at the top rate (`run --pid --check`)", ""]
res = rss.get("resources") or {}
l = rss["latency"]
lines.append(f"Open loop at {rss['target_rate']:.0f} req/s for {rss['duration_s']:.0f} s: {rss['ok']} ok, {rss['requests'] - rss['ok']} errors, "
             f"p50 {ms(l['p50_us'])}, p99 {ms(l['p99_us'])}.")
if res:
    lines.append(f"Gateway RSS peak **{res['peak_rss_kib'] / 1024:.1f} MiB**, {res['first_rss_kib'] / 1024:.1f} → {res['last_rss_kib'] / 1024:.1f} MiB "
                 f"({res['rss_growth_kib'] / 1024:+.1f} MiB) over {res['wall_seconds']:.0f} s; CPU {res['cpu_seconds']:.1f} s ({res['cpu_percent']:.0f}% of one core).")
checks = rss.get("checks")
if checks:
    lines.append(f"Invariants ({', '.join(checks['checked'])}): {verdict(checks)}.")
lines += ["", "Target: RSS under 100 MB and flat.", ""]

# Budgets and rate limits on: `metered` against `bench`, the same mock behind both.
lines += [
    "### Budgets and rate limits on (`metered` vs `bench`)",
    "",
    "`metered` is `bench` with a USD budget (month), a requests-per-minute budget (both held by",
    "dev's ledger, reserved from this edge's leases) and the endpoint's own rate limit, all far",
    "above what the suite sends: every request reserves its worst case before the upstream",
    "call and settles after it, and none is refused.",
    "",
    "| endpoint | added p50 (c=1) | added p99 (c=1) | p50 at the top rate | p99 at the top rate | req/s at the top rate |",
    "| --- | --- | --- | --- | --- | --- |",
]
rows = [("`bench`", latency, rss), ("`metered`", quota_latency, quota_rate)]
for name, compare, fixed in rows:
    a, l = compare["added_latency"], fixed["latency"]
    lines.append(f"| {name} | {usd(a['p50_us'])} | {usd(a['p99_us'])} | {ms(l['p50_us'])} | {ms(l['p99_us'])} | {fixed['throughput_rps']:.0f} |")
d = lambda key, side: quota_latency["added_latency"][key] - latency["added_latency"][key] if side == "c1" else quota_rate["latency"][key] - rss["latency"][key]
lines.append(f"| **quotas add** | {d('p50_us', 'c1'):+} µs | {d('p99_us', 'c1'):+} µs | {d('p50_us', 'rate'):+} µs | {d('p99_us', 'rate'):+} µs | |")
lines += ["", f"Both top-rate runs are open loop at {quota_rate['target_rate']:.0f} req/s for {quota_rate['duration_s']:.0f} s, one after the other; "
          "other work on the machine lands on either, so their tails differ from run to run: compare the medians."]
checks = quota_rate.get("checks")
if checks:
    lines.append(f"Invariants of the `metered` run ({', '.join(checks['checked'])}): {verdict(checks)}.")
lines.append("")

# The cluster run.
checks = cluster["checks"]
books, budget = checks["books"], checks.get("budget") or {}
mock, proj, sent = books["mock"], books.get("projector") or {}, cluster["sent"]
codes = cluster.get("error_codes", {})
refused_budget = codes.get("budget_exceeded", 0)
refused_other = sent["refused"] - refused_budget
total = sent["ok"] + sent["upstream_errors"] + sent["refused"] + sent["transport_errors"]
l = cluster["latency"]
lines += [
    f"### A 3-edge cluster with a budget exhausted mid-run ({ledgers} ledger members, NATS, a projector)",
    "",
    f"Every part is its own `floodgate serve` process on this machine: {ledgers} ledger members (Raft), 3 edges",
    "following them and publishing usage events through their spools to a `nats-server`",
    "(JetStream), and a projector folding the stream. The load (`loadtest/scenarios/cluster.yaml`:",
    "chat, a quarter streamed, 64 prompt tokens, `max_tokens` 32) goes round-robin over the 3 edges,",
    f"open loop at {cluster['target_rate']:.0f} req/s for {cluster['duration_s']:.0f} s after a 1 s warm-up. The budget `cluster-usd` "
    f"(${limit_usd}, `total`, endpoint `bench`) is 60% of what the",
    "whole load would cost, so it runs out part-way through and the edges refuse the rest.",
    "",
    "| requests sent | served | refused `budget_exceeded` | other refusals | upstream errors | transport errors |",
    "| --- | --- | --- | --- | --- | --- |",
    f"| {num(total)} | {num(sent['ok'])} | {num(refused_budget)} | {num(refused_other)} | {num(sent['upstream_errors'])} | {num(sent['transport_errors'])} |",
    "",
    f"Served requests: p50 {ms(l['p50_us'])}, p99 {ms(l['p99_us'])} from the intended send time.",
    "",
]
if budget:
    unit = {"micros": "µ$", "requests": "requests", "tokens": "tokens"}.get(budget["metric"], budget["metric"])
    lines += [
        f"| budget `{budget['id']}` | {unit} |",
        "| --- | ---: |",
        f"| limit | {num(budget['limit'])} |",
        f"| spent in truth (what the mock served, at its price) | {num(budget['spent'])} |",
        f"| settled by the ledger | {num(budget['settled_before'] + budget['settled'])} |",
        f"| **overspend** | **{num(budget['overspend'])}** |",
        "",
    ]
if proj:
    exact = lambda a, b: "yes" if a == b else f"NO (off by {b - a:+})"
    served = proj["requests"] - proj["errors"]
    lines += [
        "| accounting | requests served | input tokens | output tokens | cost µ$ |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| the mock (ground truth) | {num(mock['completed'])} | {num(mock['prompt_tokens'])} | {num(mock['completion_tokens'])} | {num(mock['cost_micros'])} |",
        f"| the projector | {num(served)} | {num(proj['input_tokens'])} | {num(proj['output_tokens'])} | {num(proj['cost_micros'])} |",
        f"| exact | {exact(mock['completed'], served)} | {exact(mock['prompt_tokens'], proj['input_tokens'])} | {exact(mock['completion_tokens'], proj['output_tokens'])} | {exact(mock['cost_micros'], proj['cost_micros'])} |",
        "",
    ]
lines += [f"Invariants ({', '.join(checks['checked'])}): **{verdict(checks)}**.", "",
          "The ledger's config (`$WORK/gateway.yaml`, given to every member with `--config`):", "", "```yaml"]
lines += (w / "gateway-shown.yaml").read_text().strip().splitlines()
lines += ["```", ""]

# Criterion micro-benchmarks, when they ran.
criterion = pathlib.Path(criterion_dir)
results = []
if criterion_command and criterion.is_dir():
    for meta in sorted(criterion.glob("**/new/benchmark.json")):
        info = json.loads(meta.read_text())
        estimates = json.loads((meta.parent / "estimates.json").read_text())
        results.append((info["full_id"], estimates["median"]["point_estimate"], info.get("throughput")))
if results:
    lines += ["### Micro-benchmarks of the hot path (criterion, `node/benches/hot_path.rs`)", "",
              "| benchmark | median per operation |", "| --- | ---: |"]
    for name, ns, _ in results:
        shown = f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"
        lines.append(f"| `{name}` | {shown} |")
    lines.append("")

lines += ["Commands (binaries in the release target dir; `$MOCK`/`$GW`/`$ADMIN` are the mock's, the gateway's and its admin API's root URLs on free ports, `$GW_PID` the gateway's pid, "
          "`$EDGE1..3`, `$PROJECTOR` and `$LEDGER_ADMIN` the cluster's edges, projector usage API and first member's admin API, `$WORK` a temp dir):", "", "```sh", "scripts/bench"]
lines += commands
if criterion_command and results:
    lines.append(criterion_command)
lines += ["```", "<!-- bench:end -->"]
block = "\n".join(lines) + "\n"

path = pathlib.Path(out)
text = path.read_text() if path.exists() else "# Benchmarks\n\n"
marked = re.compile(r"<!-- bench:begin.*?<!-- bench:end -->\n?", re.S)
if marked.search(text):
    text = marked.sub(lambda _: block, text, count=1)
else:
    # Newest results first: before the first dated section, after the introduction.
    m = re.search(r"^## ", text, re.M)
    text = text[: m.start()] + block + "\n" + text[m.start():] if m else text + "\n" + block
path.write_text(text)
print(f"bench: wrote {out}", file=sys.stderr)
