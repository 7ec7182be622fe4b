#!/usr/bin/env bash
# metrics.sh — `serve --metrics` and `nvme-nbd top` against a release build,
# under a real fio load (ioengine=nbd).
#
#   scripts/integration/metrics.sh [path/to/nvme-nbd]
#
# Two exports ("disk" under load, "" idle); checks the endpoint's status codes,
# every series name and its # TYPE, the export label, that the NBD counters
# equal what fio says it issued, that each latency histogram's count equals the
# requests answered, that the doorbell counters moved, and that
# `nvme-nbd top --count 2` prints lines for "disk" with non-zero IOPS during the
# load. Prints PASS/FAIL lines; exits 1 if any check failed.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${1:-$REPO/.build/release/nvme-nbd}"
[[ -x "$BIN" ]] || { echo "metrics: no server binary at $BIN" >&2; exit 2; }
for tool in fio /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "metrics: $tool is missing" >&2; exit 2; }
done

WORK="$(mktemp -d /tmp/nvme-nbd-metrics.XXXXXX)"
SERVER_PID=""
FIO_PID=""
FAILED=0
cleanup() {
    [[ -n "$FIO_PID" ]] && kill -KILL "$FIO_PID" 2>/dev/null
    [[ -n "$SERVER_PID" ]] && kill -KILL "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }

SOCK="$WORK/s.sock"
"$BIN" serve --unix "$SOCK" --metrics 127.0.0.1:0 --export name=disk,size=256M --export size=64M \
    --stats-json "$WORK/stats.json" --log-level warning >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 200); do
    grep -q listening "$WORK/server.log" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
done
ADDR="$(grep -o 'http://127\.0\.0\.1:[0-9]*/metrics' "$WORK/server.log" | head -n 1 | sed 's#http://##; s#/metrics##')"
if [[ -z "$ADDR" ]] || ! grep -q listening "$WORK/server.log"; then
    echo "FAIL start: $(cat "$WORK/server.log")"; exit 1
fi
URL="http://$ADDR/metrics"

# http METHOD URL [FILE]: prints "STATUS CONTENT-TYPE", the body into FILE (python3: no curl needed).
http() {
    /usr/bin/python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
try:
    r = urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10)
except urllib.error.HTTPError as e:
    r = e
body = r.read()
if len(sys.argv) > 3: open(sys.argv[3], "wb").write(body)
print(r.status, r.headers.get("Content-Type"))
PY
}
[[ "$(http GET "$URL")" == "200 text/plain; version=0.0.4; charset=utf-8" ]] && pass metrics-200 || fail metrics-200 "$(http GET "$URL")"
[[ "$(http GET "http://$ADDR/")" == 404* ]] && pass metrics-404 || fail metrics-404 "$(http GET "http://$ADDR/")"
[[ "$(http POST "$URL")" == 405* ]] && pass metrics-405 || fail metrics-405 "$(http POST "$URL")"
http GET "$URL" "$WORK/before.txt" >/dev/null

(cd "$WORK" && timeout 120 fio --name=load --ioengine=nbd --uri="nbd+unix:///disk?socket=$SOCK" --rw=randrw --bs=4k \
    --iodepth=16 --time_based --runtime=5 --size=256m --output-format=json --output="$WORK/fio.json" \
    >"$WORK/fio.log" 2>&1) &
FIO_PID=$!
sleep 1.5
timeout 30 "$BIN" top --metrics "$ADDR" --count 2 >"$WORK/top.txt" 2>&1
TOP_RC=$?
wait "$FIO_PID"; FIO_RC=$?; FIO_PID=""
[[ $FIO_RC -eq 0 ]] && pass fio-load || fail fio-load "exit $FIO_RC: $(tail -n 3 "$WORK/fio.log")"
http GET "$URL" "$WORK/after.txt" >/dev/null

# top: exit 0, its header, two lines for "disk" with IOPS > 0, two for the idle "" export with 0.
if [[ $TOP_RC -eq 0 ]] && head -n 1 "$WORK/top.txt" | grep -q '^EXPORT *IOPS *MiB/s *p50 us *p99 us *MMIO/IO *IRQ/IO' \
    && [[ $(awk '$1 == "disk" && $2 > 0' "$WORK/top.txt" | wc -l) -eq 2 ]] \
    && [[ $(awk '$1 == "\"\"" && $2 == 0' "$WORK/top.txt" | wc -l) -eq 2 ]]; then
    pass top-count-2
else
    fail top-count-2 "exit $TOP_RC: $(tr '\n' '|' <"$WORK/top.txt")"
fi

/usr/bin/python3 - "$WORK" <<'PY' && pass metrics-under-load || fail metrics-under-load "see above"
import json, re, sys
work = sys.argv[1]
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
def scrape(name):
    samples, types = [], {}
    for line in open(f"{work}/{name}"):
        line = line.rstrip("\n")
        if line.startswith("# TYPE "):
            _, _, n, t = line.split(" ")
            types[n] = t
        elif line and not line.startswith("#"):
            m = line_re.match(line)
            assert m, f"bad line {line!r}"
            samples.append((m.group(1), dict(label_re.findall(m.group(2) or "")), float(m.group(3))))
    return samples, types
def total(samples, name, **labels):
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in labels.items()))
errors = []
def expect(ok, what):
    if not ok: errors.append(what)
before, _ = scrape("before.txt")
after, types = scrape("after.txt")
want = {"nvme_nbd_requests_total": "counter", "nvme_nbd_read_bytes_total": "counter",
        "nvme_nbd_written_bytes_total": "counter", "nvme_nbd_errors_total": "counter",
        "nvme_nbd_request_duration_seconds": "histogram", "nvme_nbd_requests_in_flight": "gauge",
        "nvme_nbd_connections": "gauge", "nvme_nbd_mmio_doorbell_writes_total": "counter",
        "nvme_nbd_shadow_doorbell_writes_total": "counter", "nvme_nbd_eventidx_writes_total": "counter",
        "nvme_nbd_interrupts_total": "counter", "nvme_nbd_controller_parks_total": "counter",
        "nvme_nbd_controller_wakeups_total": "counter", "nvme_nbd_nvme_io_commands_total": "counter",
        "nvme_nbd_shadow_doorbells_enabled": "gauge"}
for n, t in want.items():
    expect(types.get(n) == t, f"# TYPE {n} {t} missing (got {types.get(n)})")
expect(set(types) == set(want), f"unexpected families {set(types) - set(want)}")
for n, l, v in after:
    expect(n.startswith("nvme_nbd_"), f"series {n} not nvme_nbd_*")
    expect(l.get("export") in ("disk", ""), f"{n} without a known export label: {l}")
fio = json.load(open(f"{work}/fio.json"))["jobs"][0]
reads, writes = fio["read"]["total_ios"], fio["write"]["total_ios"]
print(f"fio: {reads} reads, {writes} writes")
expect(reads > 0 and writes > 0, "fio did no I/O")
rq = "nvme_nbd_requests_total"
expect(total(after, rq, export="disk", type="read") == reads, f"reads {total(after, rq, export='disk', type='read')} != fio {reads}")
expect(total(after, rq, export="disk", type="write") == writes, f"writes {total(after, rq, export='disk', type='write')} != fio {writes}")
expect(total(after, "nvme_nbd_read_bytes_total", export="disk") == fio["read"]["io_bytes"], "read bytes != fio's")
expect(total(after, "nvme_nbd_written_bytes_total", export="disk") == fio["write"]["io_bytes"], "written bytes != fio's")
answered = total(after, rq, export="disk")
for t in ["read", "write", "flush", "trim", "write_zeroes", "cache", "block_status"]:
    c = total(after, "nvme_nbd_request_duration_seconds_count", export="disk", type=t)
    inf = total(after, "nvme_nbd_request_duration_seconds_bucket", export="disk", type=t, le="+Inf")
    r = total(after, rq, export="disk", type=t)
    expect(c == r == inf, f"{t}: histogram count {c}, +Inf bucket {inf}, requests {r}")
print(f"disk: {answered:.0f} requests answered, histogram counts {total(after, 'nvme_nbd_request_duration_seconds_count', export='disk'):.0f}")
buckets = sorted(float(l["le"]) for n, l, v in after if n == "nvme_nbd_request_duration_seconds_bucket"
                 and l["export"] == "disk" and l["type"] == "read" and l["le"] != "+Inf")
expect(buckets[0] == 1e-05 and buckets[-1] == 1.0, f"latency buckets {buckets}")
expect(total(after, "nvme_nbd_requests_in_flight", export="disk") == 0, "requests in flight at idle")
expect(total(after, "nvme_nbd_connections", export="disk") == 0, "connections after fio left")
expect(total(after, "nvme_nbd_errors_total", export="disk") == 0, "errors")
io = total(after, "nvme_nbd_nvme_io_commands_total", export="disk")
expect(io >= answered, f"NVMe I/O commands {io} < NBD requests {answered}")
for n in ["nvme_nbd_shadow_doorbell_writes_total", "nvme_nbd_interrupts_total", "nvme_nbd_eventidx_writes_total",
          "nvme_nbd_controller_parks_total", "nvme_nbd_controller_wakeups_total", "nvme_nbd_nvme_io_commands_total"]:
    expect(total(after, n, export="disk") > total(before, n, export="disk"), f"{n} did not move under load")
expect(total(after, "nvme_nbd_shadow_doorbells_enabled", export="disk") == 1, "shadow doorbells gauge")
expect(total(after, rq, export="") == 0, "the idle export counted requests")
mmio = total(after, "nvme_nbd_mmio_doorbell_writes_total", export="disk")
print(f"disk: MMIO doorbell writes per I/O {mmio / io:.4f}, interrupts per I/O {total(after, 'nvme_nbd_interrupts_total', export='disk') / io:.4f}")
for e in errors: print("  " + e)
sys.exit(1 if errors else 0)
PY

# The mirrored counters agree with --stats-json (the same CounterBlocks).
kill -TERM "$SERVER_PID"; wait "$SERVER_PID"; SERVER_PID=""
/usr/bin/python3 - "$WORK" <<'PY' && pass metrics-match-stats-json || fail metrics-match-stats-json "see above"
import json, re, sys
work = sys.argv[1]
stats = {e["name"]: e for e in json.load(open(f"{work}/stats.json"))["exports"]}["disk"]
text = open(f"{work}/after.txt").read()
def value(series):
    return float(re.search(re.escape(series) + r" (\S+)", text).group(1))
pairs = [('nvme_nbd_requests_total{export="disk",type="read"}', stats["nbd"]["reads"]),
         ('nvme_nbd_requests_total{export="disk",type="write"}', stats["nbd"]["writes"]),
         ('nvme_nbd_read_bytes_total{export="disk"}', stats["nbd"]["bytesRead"]),
         ('nvme_nbd_written_bytes_total{export="disk"}', stats["nbd"]["bytesWritten"])]
bad = [f"{s} = {value(s)}, --stats-json {v}" for s, v in pairs if value(s) != v]
for b in bad: print("  " + b)
sys.exit(1 if bad else 0)
PY

echo "metrics: $FAILED failed"
[[ $FAILED -eq 0 ]]
