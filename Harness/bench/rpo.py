#!/usr/bin/env python3
"""RPO of `lifeboat protect` with a vault (issue 3): from a write's fdatasync returning to the
write being inside a published recovery point (in the vault's catalog).

A writer does 64 KiB pwrite + fdatasync on the exposed disk, paced to RATE MB/s, and records
when each returned. A poller lists the vault's points every 50 ms and records when each first
appears. A write is inside the first point whose marker time is at or after its return (the
marker is appended after every write acknowledged before it), so its RPO is that point's
publication time minus the write's return: an upper bound.

usage: rpo.py LIFEBOAT IMAGE VAULT SECONDS RATE_MB_S [fresh]
("fresh": new random bytes at every write, which no compression shrinks; else one block repeated.)
"""
import json, os, subprocess, sys, threading, time
from datetime import datetime

lifeboat, image, vault, seconds, rate = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
fresh = len(sys.argv) > 6 and sys.argv[6] == "fresh"
acks, published, stop = [], {}, threading.Event()

def writer():
    fd = os.open(image, os.O_WRONLY)
    block = os.urandom(65536)
    size = os.lseek(fd, 0, os.SEEK_END)
    interval = 65536 / (rate * 1e6)
    start = time.time()
    n = 0
    while not stop.is_set():
        if fresh:
            block = os.urandom(65536)
        os.pwrite(fd, block, (n * 65536) % (size - 65536))
        os.fdatasync(fd)
        acks.append(time.time())
        n += 1
        sleep = start + n * interval - time.time()
        if sleep > 0:
            time.sleep(sleep)
    os.close(fd)

def poller():
    while not stop.is_set() or len(published) == 0:
        out = subprocess.run([lifeboat, "points", "--vault", vault, "--json"], capture_output=True, text=True).stdout
        now = time.time()
        for p in json.loads(out or "[]"):
            if p["id"] not in published:
                published[p["id"]] = (datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp(), now)
        time.sleep(0.05)

threads = [threading.Thread(target=writer), threading.Thread(target=poller)]
for t in threads: t.start()
time.sleep(seconds)
stop.set()
threads[0].join()
time.sleep(12)  # let the last points publish
threads[1].join(timeout=1)
points = sorted(published.values())
rpos = []
for ack in acks[: int(len(acks) * 0.9)]:  # the tail may have no point after it yet
    later = [pub for (marked, pub) in points if marked >= ack]
    if later:
        rpos.append(min(later) - ack)
rpos.sort()
if not rpos:
    print("no write was covered by a point"); sys.exit(1)
pick = lambda q: rpos[min(len(rpos) - 1, int(len(rpos) * q))]
mb = len(acks) * 65536 / 1e6 / seconds
print(f"writes {len(acks)} at {mb:.1f} MB/s, points {len(points)}; RPO p50 {pick(0.5):.2f} s, p99 {pick(0.99):.2f} s, max {rpos[-1]:.2f} s")
