#!/usr/bin/env bash
# The vault on another host (issue 12): sites and a vault host in network namespaces joined
# through a router whose links are delayed 10 ms each way (20 ms RTT; lifeboat-delayline, this
# kernel has no netem), `vault serve` on one, `protect` on the others.
#   bash Harness/bench/network-vault.sh [SECONDS] [RATE_MB_S] [BACKLOG_MIB] [PARTITION_S]   (ONLY=12345: which parts)
# 1. RPO to a published point at RATE MB/s of fsync'd writes (Harness/bench/rpo.py), points every
#    0.5 s, and the protect process's CPU per GB shipped;
# 2. 10 MB/s of incompressible writes through a 100 Mbit/s link (tbf) with --bandwidth 11MB/s:
#    RPO, and status's figures (its RPO and its prediction);
# 3. ingest from two sites at once: each site journals BACKLOG_MIB of random writes while the
#    vault is down, then the vault starts and both catch up: MB/s of journal taken in;
# 4. a PARTITION_S partition under RATE MB/s: time from the link's return to RPO < 1 s;
# 5. the same past --spool-limit 256M, writes cycling through 512 MiB: the journal stays bounded,
#    only the dirty regions are resynced; time until RPO < 1 s and points resumed.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
seconds=${1:-30} rate=${2:-50} backlog=${3:-512} partition=${4:-60}
only=${ONLY:-12345}  # which parts to run (site a is set up either way)
delay=${DELAY_MS:-10}  # one-way delay of the router's delay line (0: none, the veths' own latency)
swift build -c release --product lifeboat 2>&1 | tail -1
swift build -c release --product lifeboat-delayline 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)
lifeboat=$bin/lifeboat
work=$(mktemp -d /var/tmp/lifeboat-netvault.XXXXXX)
tag=nb$$ router=lbr-nb$$
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for m in "$work"/mnt-*; do mountpoint -q "$m" && umount -l "$m"; done
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^lb[hr]-$tag"); do ip netns del "$ns"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in

in_ns() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" -- "$@"; }
# In the background, its pid the program's own (nsenter execs it): what a kill -TERM must reach.
bg_ns() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" -- "$@" & pids+=($!); }
ip netns add "$router"
in_ns "$router" sysctl -qw net.ipv4.ip_forward=1
in_ns "$router" ip link set lo up
n=0
add_host() {
  n=$((n + 1)); local ns=lbh-$tag-$1
  ip netns add "$ns"
  ip link add "lb${tag}h$n" netns "$ns" type veth peer name "lb${tag}r$n" netns "$router"
  in_ns "$ns" ip link set lo up
  in_ns "$ns" ip link set "lb${tag}h$n" name eth0
  in_ns "$ns" ip addr add "10.99.$n.2/24" dev eth0
  in_ns "$ns" ip link set eth0 up
  in_ns "$ns" ip route add default via "10.99.$n.1"
  in_ns "$router" ip addr add "10.99.$n.1/24" dev "lb${tag}r$n"
  in_ns "$router" ip link set "lb${tag}r$n" up
  [ "$delay" -eq 0 ] || in_ns "$router" ip rule add iif "lb${tag}r$n" lookup 100
}
add_host vault; add_host a; add_host b
delayline_pid=$$  # no delay line (DELAY_MS=0): its CPU figure is this shell's, ~0
if [ "$delay" -gt 0 ]; then
  in_ns "$router" ip tuntap add dev lbdelay mode tun
  in_ns "$router" ip link set lbdelay up
  for k in all default lbdelay; do in_ns "$router" sysctl -qw "net.ipv4.conf.$k.rp_filter=0"; done
  in_ns "$router" ip route add default dev lbdelay table 100
  bg_ns "$router" "$bin/lifeboat-delayline" lbdelay "$delay" >/dev/null
  delayline_pid=${pids[-1]}
fi
sleep 0.3
echo "round trip site a → vault: $(in_ns lbh-$tag-a ping -c 5 -i 0.05 -q 10.99.1.2 | sed -n 's/^rtt.*= [^/]*\/\([^/]*\)\/.*/\1 ms/p')"

# AT_REST=key (default): the vault's data encrypted at rest (AES-256-GCM); AT_REST=plain: not.
at_rest=${AT_REST:-key}
if [[ $at_rest == key ]]; then "$lifeboat" vault keygen "$work/vault.key" >/dev/null; serve_key=(--key "$work/vault.key"); else serve_key=(--unencrypted); fi
echo "vault data at rest: $at_rest"
serve() {
  bg_ns "lbh-$tag-vault" "$lifeboat" vault serve --vault "$work/vault" "${serve_key[@]}" --listen 10.99.1.2:9443 >"$work/serve.out" 2>>"$work/serve.log"
  serve_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
}
site() {  # NAME SIZE [protect options…]
  local name=$1 size=$2; shift 2
  "$lifeboat" vault enroll --vault "$work/vault" --site-name "$name" --address lifeboat://10.99.1.2:9443 >"$work/$name.bundle"
  in_ns "lbh-$tag-$name" "$lifeboat" init --site "$work/site-$name" --vault lifeboat://10.99.1.2:9443 --bundle "$work/$name.bundle" >/dev/null
  "$lifeboat" disk create disk --size "$size" --site "$work/site-$name" >/dev/null
  mkdir -p "$work/mnt-$name"
  bg_ns "lbh-$tag-$name" "$lifeboat" protect "$work/mnt-$name" --site "$work/site-$name" "$@" 2>"$work/protect-$name.log"
  for _ in $(seq 100); do mountpoint -q "$work/mnt-$name" && break; sleep 0.1; done
  "$lifeboat" checkpoint --site "$work/site-$name" --timeout 600s >/dev/null  # the initial replication done
}
cpu_seconds() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
shipped() { "$lifeboat" status --site "$work/site-$1" --json | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["shipping"]["shippedLSN"], j["journal"]["durableLSN"], j["shipping"].get("rpoSeconds") or 0)'; }

serve
site a 4G --point-interval 0.5
protect_a=${pids[-1]}
if [[ $only == *1* ]]; then
echo
echo "## 1. RPO at $rate MB/s of fsync'd 64 KiB writes, 20 ms RTT, points every 0.5 s"
cpu0=$(cpu_seconds "$protect_a")
python3 Harness/bench/rpo.py "$lifeboat" "$work/mnt-a/disk.img" "$work/vault" "$seconds" "$rate"
cpu1=$(cpu_seconds "$protect_a")
python3 -c "print(f'protect (site side) CPU: {($cpu1 - $cpu0) / ($seconds * $rate / 1000):.1f} CPU-seconds per GB written and shipped')"
fi

if [[ $only == *2* ]]; then
echo
echo "## 2. 10 MB/s of incompressible writes through a 100 Mbit/s link, --bandwidth 11MB/s"
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
for dev in "lb${tag}r2"; do in_ns "$router" tc qdisc add dev "$dev" root tbf rate 100mbit burst 64kb latency 400ms; done
in_ns "lbh-$tag-a" tc qdisc add dev eth0 root tbf rate 100mbit burst 64kb latency 400ms
bg_ns "lbh-$tag-a" "$lifeboat" protect "$work/mnt-a" --site "$work/site-a" --point-interval 0.5 --bandwidth 11MB/s 2>>"$work/protect-a.log"
for _ in $(seq 100); do mountpoint -q "$work/mnt-a" && break; sleep 0.1; done
( sleep $((seconds / 2)); "$lifeboat" status --site "$work/site-a" | grep -E "RPO now|bandwidth|waiting" > "$work/status-throttled.txt" ) &
python3 Harness/bench/rpo.py "$lifeboat" "$work/mnt-a/disk.img" "$work/vault" "$seconds" 10 fresh || true
echo "status halfway:"; cat "$work/status-throttled.txt"
kill -TERM "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
in_ns "$router" tc qdisc del dev "lb${tag}r2" root; in_ns "lbh-$tag-a" tc qdisc del dev eth0 root
bg_ns "lbh-$tag-a" "$lifeboat" protect "$work/mnt-a" --site "$work/site-a" 2>>"$work/protect-a.log"
for _ in $(seq 100); do mountpoint -q "$work/mnt-a" && break; sleep 0.1; done
fi

if [[ $only == *3* ]]; then
echo
echo "## 3. ingest from two sites at once: $backlog MiB of journal each, taken in after an outage"
site b 4G
protect_b=${pids[-1]}
kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
head -c "$((backlog << 20))" /dev/urandom > "$work/random"
writers=()
for s in a b; do dd if="$work/random" of="$work/mnt-$s/disk.img" bs=1M seek=1024 conv=notrunc,fsync status=none & writers+=($!); done
wait "${writers[@]}"
sleep 2
read -r a0 ad _ < <(shipped a); read -r b0 bd _ < <(shipped b)
bytes_a=$(du -sb "$work/site-a/journal" | cut -f1) bytes_b=$(du -sb "$work/site-b/journal" | cut -f1)
bytes=$((bytes_a + bytes_b))
# The baseline: two plain TCP flows of the same size at once, site a and site b to the vault host.
tcp_baseline=$(python3 - "$tag" "$bytes" <<'PY'
import subprocess, sys, time
tag, total = sys.argv[1], int(sys.argv[2]) // 2
ns = lambda h: ["nsenter", f"--net=/run/netns/lbh-{tag}-{h}", "--"]
sink = subprocess.Popen(ns("vault") + ["python3", "-c", """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 7777)); s.listen(2)
def drain(c):
    while c.recv(1 << 20): pass
    c.close()
ts = [threading.Thread(target=drain, args=(s.accept()[0],)) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
"""])
time.sleep(0.5)
send = "import socket; s = socket.create_connection(('10.99.1.2', 7777)); b = bytes(1 << 20)\nfor _ in range(%d): s.sendall(b)\ns.shutdown(socket.SHUT_WR); s.recv(1)" % (total >> 20)
start = time.monotonic()
flows = [subprocess.Popen(ns(h) + ["python3", "-c", send]) for h in ("a", "b")]
[f.wait() for f in flows]; sink.wait()
print(f"{2 * (total >> 20) * 1048576 / 1e6 / (time.monotonic() - start):.0f}")
PY
)
echo "baseline: two plain TCP flows of the same bytes at once, same links: $tcp_baseline MB/s"
start=$(date +%s.%N)
serve
cpu=($(cpu_seconds "$protect_a") $(cpu_seconds "$protect_b") $(cpu_seconds "$delayline_pid"))
# Timed on the vault host, from each site's catalog (the LSN it holds, polled every 20 ms): until
# both hold all their journal. The sites retry a vault that was down once a second: the clock
# also starts again at the first LSN taken in, with what was left then (each site's journal bytes
# in proportion to the LSNs it lacked: its records are all of one size, dd's writes), to see the
# ingest apart from the reconnection.
read -r first left end < <(python3 - "$work/vault/sites" "$a0" "$ad" "$bytes_a" "$b0" "$bd" "$bytes_b" <<'PY'
import sqlite3, sys, time
sites, a0, ad, ba, b0, bd, bb = sys.argv[1], *map(int, sys.argv[2:])
def held(s):
    try:
        db = sqlite3.connect(f"file:{sites}/{s}/catalog.sqlite?mode=ro", uri=True, timeout=1)
        try: return db.execute("SELECT lastLSN FROM grp").fetchone()[0] or 0
        finally: db.close()
    except sqlite3.Error: return 0
first = None
while True:
    a, b = max(a0, held("a")), max(b0, held("b"))
    now = time.time()
    if first is None and (a > a0 or b > b0):
        first, left = now, ba * (ad - a) / (ad - a0) + bb * (bd - b) / (bd - b0)
    if a >= ad and b >= bd: break
    time.sleep(0.02)
print(f"{first:.3f} {left:.0f} {now:.3f}")
PY
)
python3 -c "print(f'two sites: {$bytes / 2**20:.0f} MiB of journal in {$end - $start:.1f} s from the start of vault serve: {$bytes / 1e6 / ($end - $start):.0f} MB/s, {$bytes / 1e6 / ($end - $start) / $tcp_baseline * 100:.0f}% of the plain TCP baseline')"
python3 -c "print(f'from the first LSN taken in ({$first - $start:.1f} s after the start): {$left / 2**20:.0f} MiB left, taken in {$end - $first:.1f} s: {$left / 1e6 / ($end - $first):.0f} MB/s')"
python3 -c "w = $end - $start; print(f'CPU during it, % of one core: vault serve {100 * $(cpu_seconds "$serve_pid") / w:.0f}, protect a {100 * ($(cpu_seconds "$protect_a") - ${cpu[0]}) / w:.0f}, protect b {100 * ($(cpu_seconds "$protect_b") - ${cpu[1]}) / w:.0f}, the delay line {100 * ($(cpu_seconds "$delayline_pid") - ${cpu[2]}) / w:.0f}')"
fi

# A PARTITION_S partition of site a under RATE MB/s of 64 KiB fdatasync'd writes cycling through
# the first SPAN_MIB of its disk: the RPO when the link comes back, the journal's peak size, and
# the time until status's RPO is under 1 s (and no point is paused).
partition_run() {
  local span=$1
  python3 - "$work/mnt-a/disk.img" "$rate" "$((partition + 120))" "$span" <<'PY' & pids+=($!)
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY); rate = float(sys.argv[2]); end = time.time() + float(sys.argv[3])
span = min(int(sys.argv[4]) << 20, os.lseek(fd, 0, os.SEEK_END))
block = os.urandom(65536); n = 0; start = time.time()
while time.time() < end:
    os.pwrite(fd, block, (n * 65536) % (span - 65536)); os.fdatasync(fd); n += 1
    d = start + n * 65536 / (rate * 1e6) - time.time()
    if d > 0: time.sleep(d)
PY
  local writer=$! peak=0 size
  sleep 5
  in_ns "lbh-$tag-a" ip link set eth0 down
  for _ in $(seq "$partition"); do
    sleep 1
    size=$(du -sm "$work/site-a/journal" | cut -f1); [ "$size" -gt "$peak" ] && peak=$size
  done
  in_ns "lbh-$tag-a" ip link set eth0 up; in_ns "lbh-$tag-a" ip route replace default via 10.99.2.1
  local back; back=$(date +%s.%N)
  echo "journal at most ${peak} MiB during the partition ($((partition * rate)) MB written)"
  read -r _ _ rpo < <(shipped a); echo "RPO when the link came back: ${rpo} s"
  until read -r _ _ rpo < <(shipped a) && python3 -c "import sys; sys.exit(0 if $rpo < 1 else 1)" \
        && ! "$lifeboat" status --site "$work/site-a" | grep -q "points paused"; do
    sleep 0.5
    python3 -c "import sys; sys.exit(0 if $(date +%s) - ${back%.*} < 400 else 1)" || { echo "not caught up in 400 s"; break; }
  done
  local caught; caught=$(date +%s.%N)
  python3 -c "print(f'caught up (status RPO < 1 s, points resumed) {$caught - $back:.1f} s after the link came back')"
  grep -o "resync done: .*" "$work/protect-a.log" | tail -1 || true
  kill "$writer" 2>/dev/null || true
}

if [[ $only == *4* ]]; then
echo
echo "## 4. a ${partition} s partition of site a under $rate MB/s: catch-up"
partition_run 4096
fi

if [[ $only == *5* ]]; then
echo
echo "## 5. the same partition past --spool-limit 256M, writes cycling through 512 MiB: resync"
pkill -TERM -f "protect $work/mnt-a" || true  # whichever protect of site a runs (part 2 restarts it)
while pgrep -f "protect $work/mnt-a" >/dev/null; do sleep 0.2; done
bg_ns "lbh-$tag-a" "$lifeboat" protect "$work/mnt-a" --site "$work/site-a" --point-interval 0.5 --spool-limit 256M 2>>"$work/protect-a.log"
protect_a=${pids[-1]}
for _ in $(seq 600); do mountpoint -q "$work/mnt-a" && break; sleep 0.1; done
mountpoint -q "$work/mnt-a" || { echo "protect of site a did not mount"; exit 1; }
partition_run 512
fi
