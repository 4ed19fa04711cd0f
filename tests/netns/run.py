#!/usr/bin/env python3
"""`make test-netns`: five `petrel run` processes on five real hosts (network namespaces on a
bridge), driven only through the petrel CLI, over IPv4 and again over IPv6.

For each address family it checks put/get and publish/subscribe across the hosts, then cuts
hosts 4 and 5 off from 1-3 with iptables (a partition), checks the majority keeps working and
that the partition really holds, heals it, and checks that the record stored and the messages
published during the partition reach the two that were cut off.

Needs root (it creates and removes its own namespaces, named pt-*, with private addresses
only: 10.77.0.0/24 and fd77::/64), iproute2 and iptables. Everything it creates is removed on
exit, also on failure.
"""

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PETREL = os.path.join(ROOT, "target", "release", "petrel")
HOSTS = 5
PORT = 4001
TOPIC = "netns-demo"
CUT = (4, 5)  # the minority the partition separates from hosts 1-3
DEADLINE = 60.0
# How long the partition lasts at least: several heartbeats, status pings and request timeouts,
# so the nodes on each side see the others fail before the heal.
PARTITION_SECS = 10.0


def sh(*args, check=True, ns=None):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()}")
    return out


def ns(i):
    return f"pt-n{i}"


class Bed:
    """The namespaces, the bridge and the addresses of one address family."""

    def __init__(self, family):
        self.family = family
        self.bridge_ns = "pt-br"

    def addr(self, i):
        return f"10.77.0.{i}" if self.family == 4 else f"fd77::{i}"

    def sock(self, i):
        return f"{self.addr(i)}:{PORT}" if self.family == 4 else f"[{self.addr(i)}]:{PORT}"

    def __enter__(self):
        self.teardown()
        sh("ip", "netns", "add", self.bridge_ns)
        sh("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for i in range(1, HOSTS + 1):
            sh("ip", "netns", "add", ns(i))
            sh("ip", "link", "add", f"pt-v{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns(i))
            sh("ip", "link", "set", f"pt-v{i}", "netns", self.bridge_ns)
            sh("ip", "-n", self.bridge_ns, "link", "set", f"pt-v{i}", "master", "br0", "up")
            sh("ip", "-n", ns(i), "link", "set", "lo", "up")
            if self.family == 4:
                sh("ip", "-n", ns(i), "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            else:
                # nodad: usable at once, without duplicate address detection's wait.
                sh("ip", "-n", ns(i), "addr", "add", f"{self.addr(i)}/64", "dev", "eth0", "nodad")
            sh("ip", "-n", ns(i), "link", "set", "eth0", "up")
        return self

    def __exit__(self, *exc):
        self.teardown()

    def teardown(self):
        for name in [self.bridge_ns] + [ns(i) for i in range(1, HOSTS + 1)]:
            sh("ip", "netns", "del", name, check=False)

    def partition(self, on):
        """Drops everything between the hosts in CUT and the rest, in both directions."""
        tool = "iptables" if self.family == 4 else "ip6tables"
        for i in CUT:
            for j in range(1, HOSTS + 1):
                if j in CUT:
                    continue
                for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d")):
                    sh(tool, "-A" if on else "-D", chain, flag, self.addr(j), "-j", "DROP",
                       ns=ns(i))


class Node:
    """One `petrel run` in host i's namespace, its stderr collected line by line."""

    def __init__(self, bed, i, base, bootstrap):
        self.i = i
        self.dir = os.path.join(base, f"n{i}")
        os.makedirs(self.dir, mode=0o700)
        self.id = cli(self, "init").strip()
        conf = os.path.join(self.dir, "petrel.toml")
        with open(conf) as f:
            text = f.read()
        # A LAN: private addresses are real here, and five hosts share one subnet.
        text = text.replace("local_network = false", "local_network = true")
        text = text.replace("ip_limits = true", "ip_limits = false")
        with open(conf, "w") as f:
            f.write(text)
        args = ["run", "--data-dir", self.dir, "--listen", bed.sock(i), "--status-secs", "2"]
        if bootstrap:
            args += ["--bootstrap", bootstrap]
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns(i), PETREL] + args,
                                     stderr=subprocess.PIPE, text=True)
        self.log = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cli(node, *args, check=True, timeout=30):
    out = subprocess.run([PETREL, args[0], "--data-dir", node.dir] + list(args[1:]),
                         capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"petrel {' '.join(args)} on host {node.i}: exit {out.returncode}: "
                           f"{out.stderr.strip()}")
    return out.stdout if check else out


class Subscriber:
    """`petrel subscribe TOPIC` on one node, its lines collected."""

    def __init__(self, node):
        self.node = node
        self.proc = subprocess.Popen([PETREL, "subscribe", "--data-dir", node.dir, TOPIC],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def got(self, text):
        return any(text in line for line in self.lines)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def wait(what, cond, deadline=DEADLINE, every=0.2):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(every)
    raise AssertionError(f"not within {deadline:.0f} s: {what}")


def peers(node):
    return json.loads(cli(node, "peers", "--json"))


def get(node, key):
    """The value under key as found from node, or None."""
    out = subprocess.run([PETREL, "get", "--data-dir", node.dir, key], capture_output=True,
                         timeout=30)
    return out.stdout.decode() if out.returncode == 0 else None


def step(msg):
    print(f"[netns] {msg}", flush=True)


def scenario(family):
    base = tempfile.mkdtemp(prefix=f"petrel-netns{family}-")
    os.chmod(base, 0o700)
    nodes, subs = [], []
    try:
        with Bed(family) as bed:
            step(f"IPv{family}: {HOSTS} hosts on a bridge")
            first = Node(bed, 1, base, None)
            nodes.append(first)
            wait("host 1's control socket", lambda: os.path.exists(
                os.path.join(first.dir, "control.sock")))
            for i in range(2, HOSTS + 1):
                nodes.append(Node(bed, i, base, f"{first.id}@{bed.sock(1)}"))
            for n in nodes:
                wait(f"host {n.i} has 2 peers", lambda n=n: len(peers(n)) >= 2)
            step("connected: " + ", ".join(f"host {n.i}: {len(peers(n))} peers" for n in nodes))

            subs = [Subscriber(n) for n in nodes]
            # The mesh forms within a few heartbeats; publish until everyone has heard one.
            k = 0

            def warmed():
                nonlocal k
                k += 1
                cli(nodes[0], "publish", TOPIC, f"warm-up {k}")
                return all(any("warm-up" in l for l in s.lines) for s in subs[1:])
            wait("the topic's mesh reaches every host", warmed, every=1.0)

            key = cli(nodes[0], "put", f"before-{family}").strip()
            assert len(key) == 64, key
            for n in nodes[1:]:
                wait(f"host {n.i} gets the record", lambda n=n: get(n, key) == f"before-{family}")
            cli(nodes[1], "publish", TOPIC, f"hello from 2 (IPv{family})")
            for s in subs:
                if s.node.i != 2:
                    wait(f"host {s.node.i} hears host 2", lambda s=s: s.got("hello from 2"))
            step("put/get and publish/subscribe work across all hosts")

            bed.partition(True)
            cut_at = time.monotonic()
            step(f"partition: hosts {CUT} cut off from the rest for {PARTITION_SECS:.0f} s")
            during_key = cli(nodes[0], "put", f"during-{family}").strip()
            for n in nodes[1:3]:
                wait(f"host {n.i} gets the record put during the partition",
                     lambda n=n: get(n, during_key) == f"during-{family}")
            during = [f"during-partition {m} (IPv{family})" for m in range(3)]
            for m in during:
                cli(nodes[0], "publish", TOPIC, m)
            for s in subs[1:3]:
                for m in during:
                    wait(f"host {s.node.i} hears {m!r}", lambda s=s, m=m: s.got(m))
            # The partition really holds: the cut-off hosts have not heard any of it (the
            # majority heard every message, so it had its chance to cross).
            for s in subs:
                if s.node.i in CUT:
                    assert not any(s.got(m) for m in during), f"host {s.node.i} heard {during}"
            step("the majority keeps working; the cut-off hosts see none of it")
            time.sleep(max(0.0, cut_at + PARTITION_SECS - time.monotonic()))
            for s in subs:
                if s.node.i in CUT:
                    assert not any(s.got(m) for m in during), f"host {s.node.i} heard {during}"

            bed.partition(False)
            healed_at = time.monotonic()
            step("healed")
            for i in CUT:
                n = nodes[i - 1]
                wait(f"host {i} gets the record put during the partition",
                     lambda n=n: get(n, during_key) == f"during-{family}")
                s = subs[i - 1]
                for m in during:
                    wait(f"host {i} hears {m!r}", lambda s=s, m=m: s.got(m))
            cli(nodes[CUT[0] - 1], "publish", TOPIC, f"after from {CUT[0]}")
            for s in subs:
                if s.node.i != CUT[0]:
                    wait(f"host {s.node.i} hears host {CUT[0]} after the heal",
                         lambda s=s: s.got(f"after from {CUT[0]}"))
            step(f"after the heal every record and message reached every host, "
                 f"{time.monotonic() - healed_at:.1f} s after it")

            for s in subs:
                s.stop()
            subs = []
            for n in nodes:
                cli(n, "shutdown")
            for n in nodes:
                assert n.proc.wait(15) == 0, f"host {n.i} exited {n.proc.returncode}"
            step(f"IPv{family} passed")
    except BaseException:
        for n in nodes:
            print(f"--- host {n.i} log (last 30 lines)", file=sys.stderr)
            for line in n.log[-30:]:
                print(line, file=sys.stderr)
        raise
    finally:
        for s in subs:
            s.stop()
        for n in nodes:
            n.stop()
        shutil.rmtree(base, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        sys.exit("test-netns needs root (network namespaces and iptables)")
    for tool in ("ip", "iptables", "ip6tables"):
        if shutil.which(tool) is None:
            sys.exit(f"test-netns needs {tool}")
    if not os.access(PETREL, os.X_OK):
        sys.exit(f"{PETREL}: build it first (make build)")
    started = time.monotonic()
    for family in (4, 6):
        scenario(family)
    print(f"[netns] passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
