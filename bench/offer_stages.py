"""Splits each offer's time in one node's log (bench/cluster.sh --stages):
the agent's BYE ("agent leg ended") to the dispatcher reading the call's end
from the store, the dispatcher's decision and offer script, and the node
taking the offer ("offering to agent"). Needs the store's debug lines."""
import datetime
import re
import sys


def seconds(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def quantile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")


pending, rows = {}, []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"^(\S+Z)\s+\w+\s+(.*)$", line)
    if not m:
        continue
    t, rest = seconds(m.group(1)), m.group(2)
    if rest.startswith("agent leg ended"):
        call = re.search(r"call=(\d+)", rest).group(1)
        agent = re.search(r"agent=(\S+)", rest).group(1)
        pending[agent] = {"bye": t, "call": call}
    elif rest.startswith("dispatcher: call end read"):
        call = re.search(r"caller=(\S+)", rest).group(1).split(":")[-1]
        for d in pending.values():
            if d["call"] == call and "read" not in d:
                d["read"] = t
    elif rest.startswith("dispatcher: offer written"):
        agent = re.search(r"agent=(\S+)", rest).group(1)
        d = pending.get(agent)
        if d and "read" in d and "offer" not in d:
            d["offer"] = t
    elif rest.startswith("offering to agent"):
        agent = re.search(r"agent=(\S+)", rest).group(1)
        d = pending.pop(agent, None)
        if d and "read" in d and "offer" in d:
            rows.append((d["read"] - d["bye"], d["offer"] - d["read"], t - d["offer"]))

names = [
    "BYE to the dispatcher reading the call's end",
    "the dispatcher's decision and offer script",
    "offer written to the node offering",
]
print(f"stages over {len(rows)} offers:")
for i, name in enumerate(names):
    column = [r[i] for r in rows]
    print(f"  {name}: p50 {quantile(column, .5):.2f} ms, p99 {quantile(column, .99):.2f} ms")
