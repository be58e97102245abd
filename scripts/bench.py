#!/usr/bin/env python3
"""`make bench`: credgate against the limit of its own machine, and against its peers.

1. Peers (also alone with BENCH_ONLY=peers): pod creates through the API
   server with no webhook, a null webhook (credgate's TLS and HTTP stack
   answering allowed, registered with credgate's rules), credgate and Kyverno
   (built from its Go module by scripts/kyverno-bin; BENCH_KYVERNO=0 skips
   it), alternated, at 1 and 20 clients; API server and webhook CPU per pod
   from /proc. Then kube-apiserver CPU profiles (/debug/pprof) with the null
   webhook and with credgate, reduced to ms per pod at named functions, and
   what the API server's JSON patch library spends on each form of the
   injection (benches/apiserver_patch; BENCH_PROFILE=0 skips both).
2. Ceiling (also alone with BENCH_ONLY=ceiling, into target/bench/ceiling.json):
   examples/null_webhook with a canned answer (credgate's TLS setup
   answering a canned AdmissionReview of the size of credgate's answer) vs
   credgate /mutate (a 3-container pod, 5 credential references) and
   /validate (a docker-registry Secret), with oha over TLS keep-alive, 50
   connections, alternating A B A B.
3. /mutate at a fixed 1,000 req/s: p99 and p99.9.
4. Scale (also alone with BENCH_ONLY=scale, into target/bench/scale.json):
   the local apiserver filled with namespaces, credential Secrets and
   pods; credgate's time to /readyz, RSS after sync, decision p99 vs empty
   (the median of BENCH_DECISION_RUNS runs of 10 s at 200 req/s, default 1),
   with a control timed beside credgate (see start_control), the control
   plane pinned to one CPU and the timed servers and oha to the other (PIN),
   and runs during which the control plane was busy timed again (QUIET_CORES).
   The default (2,000 namespaces) keeps `make bench` under 20 minutes; issue
   19's at-scale figure is BENCH_SCALE=10000,5,10 BENCH_DECISION_RUNS=4 (longer).
5. criterion micro-benchmarks of the pure decision paths and of whole reviews.

Results: target/bench/results.json and a text table (also target/bench/results.txt).
Every process started here is stopped by pid at the end.
"""
import base64
import json
import os
import pathlib
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
OUT = REPO / "target" / "bench"
SECS = int(os.environ.get("BENCH_SECS", "10"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "3"))
NAMESPACES, SECRETS_PER_NS, PODS_PER_NS = (int(x) for x in os.environ.get("BENCH_SCALE", "2000,5,10").split(","))
CONNECTIONS = 50
CLUSTER = OUT / "cluster"
SCALE_ONLY = os.environ.get("BENCH_ONLY") == "scale"
CEILING_ONLY = os.environ.get("BENCH_ONLY") == "ceiling"
# kube-apiserver serves /debug/pprof for the profiles of the peers step.
ENV = dict(os.environ, CREDGATE_DEV_STATE=str(CLUSTER), CREDGATE_BIN=str(REPO / "target/release/credgate"),
           CREDGATE_APISERVER_PROFILING="true")
started = []


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(*args, env=None, stdin=None, cpus=None):
    on_cpus = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run([str(a) for a in args], env=env or ENV, input=stdin, capture_output=True, text=True,
                         preexec_fn=on_cpus)
    if out.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, args, env=None):
    logf = open(OUT / f"{name}.log", "w")
    p = subprocess.Popen([str(a) for a in args], env=env or ENV, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_until(what, secs, check):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {what} not ready after {secs}s")


def http_ok(url):
    return urllib.request.urlopen(url, timeout=2).status == 200


def cpu_busy(window=2.0):
    """Share of all CPUs busy over `window` seconds (from /proc/stat)."""
    def read():
        fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]
    t0, i0 = read()
    time.sleep(window)
    t1, i1 = read()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit=0.25, secs=300):
    """Waits until the machine is mostly idle (the controller-manager is done
    with what the fill started), so decisions are timed without that load."""
    deadline = time.time() + secs
    busy = cpu_busy()
    while busy > limit and time.time() < deadline:
        busy = cpu_busy()
    return round(busy, 2)


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def post(url, body):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    return urllib.request.urlopen(req, context=ctx, timeout=5).read()


def oha(url, body, secs, rate=None, connections=CONNECTIONS):
    args = [OHA, "-z", f"{secs}s", "-c", connections, "-m", "POST", "-D", body, "-T", "application/json",
            "--insecure", "--no-tui", "--output-format", "json", url]
    if rate:
        args[1:1] = ["-q", rate]
    r = json.loads(sh(*args, cpus=OHA_CPUS))
    codes = r.get("statusCodeDistribution", {})
    pct = r["latencyPercentiles"]
    return {
        "rps": round(r["summary"]["requestsPerSec"], 1),
        "p50_ms": round(pct["p50"] * 1000, 3),
        "p99_ms": round(pct["p99"] * 1000, 3),
        "p99_9_ms": round(pct["p99.9"] * 1000, 3),
        "success_rate": r["summary"]["successRate"],
        "status": codes,
    }


def review(request):
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def request(kind, resource, ns, name, operation, obj=None, old=None):
    group, version = ("", "v1")
    return {
        "uid": "bench-0000", "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": name, "namespace": ns, "operation": operation,
        "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "object": obj, "oldObject": old, "dryRun": False, "options": None,
    }


def training_pod(ns):
    """The pod of the criterion benchmark (benches/data/training-pod.json) in namespace `ns`."""
    pod = json.loads((REPO / "benches/data/training-pod.json").read_text())
    pod["metadata"]["namespace"] = ns
    return pod


def b64(s):
    return base64.b64encode(s.encode()).decode()


def fixtures(kubectl):
    dockercfg = json.dumps({"auths": {"ghcr.io": {"username": "bench", "password": "bench-only"}}})
    objs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "runai"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-p", "labels": {"runai/queue": "bench-p"}}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "bench-p", "labels": {"run.ai/resource": "generic"}},
         "stringData": {"url": "postgres://bench", "token": "bench-only"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3", "namespace": "bench-p", "labels": {"run.ai/resource": "access-key"}},
         "stringData": {"AccessKeyId": "AKIABENCH", "SecretKey": "bench-only"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git", "namespace": "bench-p", "labels": {"run.ai/resource": "password"}},
         "stringData": {"User": "bench", "Password": "bench-only"}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
         "metadata": {"name": "ghcr", "namespace": "bench-p", "labels": {"run.ai/resource": "docker-registry"}},
         "stringData": {".dockerconfigjson": dockercfg}},
        # A user of db, so that deleting db is an in-use decision.
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "user", "namespace": "bench-p"},
         "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "user"}}, "template": {
             "metadata": {"labels": {"app": "user"}, "annotations": {"run.ai/credentials-env": "TOKEN=db:token"}},
             "spec": {"containers": [{"name": "c", "image": "ghcr.io/org/app:1"}]}}}},
    ]
    sh(kubectl, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    db = json.loads(sh(kubectl, "get", "secret", "db", "-n", "bench-p", "-o", "json"))
    return db


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {"cpus": os.cpu_count(), "cpu": model, "memory_gib": round(mem / 1024 / 1024, 1), "kernel": platform.release()}


def start_credgate(kubeconfig, port, admin):
    p = start(f"credgate-{port}", [REPO / "target/release/credgate", "serve", "--controller=false",
                                  "--addr", f"127.0.0.1:{port}", "--admin-addr", f"127.0.0.1:{admin}",
                                  "--tls-cert", OUT / "certs/tls.crt", "--tls-key", OUT / "certs/tls.key"],
              env=dict(ENV, KUBECONFIG=str(kubeconfig)))
    t0 = time.time()
    wait_until("credgate /readyz", 600, lambda: http_ok(f"http://127.0.0.1:{admin}/readyz"))
    return p, time.time() - t0


def control_plane_cores(measure, **more):
    """Runs `measure()`; returns its result and the control plane's CPU during
    it, in cores busy, per process (from /proc/<pid>/stat); `more` names other
    processes to count (name=pid)."""
    pids = {n: int((CLUSTER / f"{n}.pid").read_text()) for n in ("kube-apiserver", "kube-controller-manager", "etcd")}
    pids.update(more)
    t0, c0 = time.time(), {n: cpu_seconds(pid) for n, pid in pids.items()}
    out = measure()
    secs = max(1e-3, time.time() - t0)
    return out, {n: round((cpu_seconds(pid) - c0[n]) / secs, 3) for n, pid in pids.items()}


DECISION_RUNS = max(1, int(os.environ.get("BENCH_DECISION_RUNS", "1")))
# Decisions that ask the API server themselves (an allowed credential DELETE
# is confirmed on the workloads it holds): the control plane's CPU during
# their runs is partly theirs, so they are not set aside for it.
CALLS_API = {"delete_cluster_scope"}
# A decision run during which the control plane (kube-apiserver, etcd,
# kube-controller-manager) used more than this many cores is set aside and
# timed again: with 100,000 pods in its cache, kube-apiserver takes 0.2 to 1
# core for 5 to 10 s five or six times in ten minutes, whatever credgate does
# (cause not confirmed; some come two minutes apart, Go's forced garbage
# collection period), which is the machine, not the decision. At rest, the three use about 0.03 to 0.07
# cores; in the quiet runs of a full cluster, with two credgates watching,
# 0.07 to 0.11.
QUIET_CORES = float(os.environ.get("BENCH_QUIET_CORES", "0.12"))
QUIET_TRIES = 4


def decisions(port, bodies, control=None, pid=None, rate=200, secs=10, runs=DECISION_RUNS):
    """Each body at `rate` req/s over 10 connections, in `runs` runs of `secs`
    interleaved. p50 and p99 are the medians of the runs' (one run's p99 rests
    on its 20 slowest answers; with an even number of runs, the mean of the
    middle two); the worst run's p99 and every run are kept. Each run also
    records the server's CPU per request (from /proc, `pid`).
    With `control` (port, pid), /mutate is timed on the control too, next to
    credgate in each run: after it in the 1st, 3rd, ... runs and before it in
    the others, so that a machine settling during the runs favours neither
    (key "control_mutate").
    Each run is timed on a quiet control plane: one during which the control
    plane used more than QUIET_CORES is set aside (kept under "set_aside")
    and timed again, at most QUIET_TRIES times in all (the last is kept,
    marked "quiet": false); each run records the control plane's cores
    during it. A run timed again is no longer in the same minutes as its
    pair (credgate's or the control's)."""
    def timed(url, body, server_pid, name):
        set_aside = []
        tries = 1 if name in CALLS_API else QUIET_TRIES
        for attempt in range(tries):
            wait_quiet(limit=0.10, secs=30)
            c0 = cpu_seconds(server_pid) if server_pid else 0.0
            r, cores = control_plane_cores(lambda: oha(url, body, secs, rate=rate, connections=10))
            if server_pid:
                r["cpu_us_per_request"] = round((cpu_seconds(server_pid) - c0) / max(1, r["rps"] * secs) * 1e6, 1)
            r["control_plane_cores"] = round(sum(cores.values()), 3)
            r["quiet"] = r["control_plane_cores"] <= QUIET_CORES
            if r["quiet"] or attempt == tries - 1:
                break
            set_aside.append({k: r[k] for k in ("p50_ms", "p99_ms", "control_plane_cores")})
        r["set_aside"] = set_aside
        return r

    got = {name: [] for name in bodies}
    if control:
        got["control_mutate"] = []
    for i in range(runs):
        for name, (path, body) in bodies.items():
            order = [(name, f"https://127.0.0.1:{port}/{path}", pid)]
            if control and name == "mutate":
                order.append(("control_mutate", f"https://127.0.0.1:{control[0]}/mutate", control[1]))
                if i % 2 == 1:
                    order.reverse()
            for key, url, server_pid in order:
                got[key].append(timed(url, body, server_pid, key))
    return {name: {"p50_ms": statistics.median(r["p50_ms"] for r in rs),
                   "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                   "p99_ms_worst_run": max(r["p99_ms"] for r in rs),
                   "runs": rs} for name, rs in got.items()}


# The scale step times its decisions with the control plane (etcd,
# kube-apiserver, kube-controller-manager and the dev cluster's own credgate)
# on the second CPU, and the servers being timed and oha on the first
# (BENCH_SCALE_PIN=0: not pinned). In a cluster, credgate runs on a worker
# node, not beside kube-apiserver; on this 2-core machine a kube-apiserver
# holding 100,000 pods would otherwise take CPU time from the decisions timed.
ALL_CPUS = sorted(os.sched_getaffinity(0))
PIN = os.environ.get("BENCH_SCALE_PIN", "1") != "0" and len(ALL_CPUS) >= 2
TIMED_CPUS, CLUSTER_CPUS = {ALL_CPUS[0]}, set(ALL_CPUS[1:])
OHA_CPUS = None


def pin(pid, cpus):
    """Sets the CPUs of every thread of `pid` (threads made later inherit it;
    a second pass catches those made during the first)."""
    for _ in range(2):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return  # the process has ended
        for task in tasks:
            try:
                os.sched_setaffinity(int(task), cpus)
            except OSError:
                pass  # a thread that has just ended


def cluster_pids():
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "credgate")
    return [int((CLUSTER / f"{n}.pid").read_text()) for n in names if (CLUSTER / f"{n}.pid").exists()]


def pin_for_decisions(*timed_pids):
    """Pins the control plane and the timed servers apart (see PIN); returns
    what was done, for the results."""
    global OHA_CPUS
    if not PIN:
        return None
    for pid in cluster_pids():
        pin(pid, CLUSTER_CPUS)
    for pid in timed_pids:
        pin(pid, TIMED_CPUS)
    OHA_CPUS = TIMED_CPUS
    return {"timed_and_oha_cpus": sorted(TIMED_CPUS), "control_plane_cpus": sorted(CLUSTER_CPUS)}


def unpin():
    global OHA_CPUS
    OHA_CPUS = None
    if PIN:
        for pid in cluster_pids():
            pin(pid, set(ALL_CPUS))


def start_control(port, state):
    """The control of the scale step: examples/serve_snapshot, credgate's
    server and decisions over a fixed one-project snapshot (bench-p), with no
    API server and no watch. Timed beside credgate in both states, it shows
    what the filled machine alone does to the figures."""
    p = start(f"control-{state}", [REPO / "target/release/examples/serve_snapshot", f"127.0.0.1:{port}",
                                  OUT / "certs/tls.crt", OUT / "certs/tls.key"])
    body = (OUT / "bodies" / "mutate.json").read_bytes()
    wait_until("serve_snapshot", 30, lambda: b'"patch"' in post(f"https://127.0.0.1:{port}/mutate", body))
    return p


PEER_PODS = {1: int(os.environ.get("BENCH_PEER_PODS_1", "200")), 20: int(os.environ.get("BENCH_PEER_PODS_20", "600"))}


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (from /proc/<pid>/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


KYVERNO_ON = os.environ.get("BENCH_KYVERNO", "1") != "0"
KYVERNO_WARMUP = 200
KYVERNO_MANAGED = "webhook.kyverno.io/managed-by=kyverno"


def kyverno_policy():
    """A Kyverno ClusterPolicy giving the training pod exactly credgate's
    injection, in Kyverno's cheapest form: `patchesJson6902` with the 15 `add`
    operations credgate itself sent until it folded them into one `replace`
    (benches/data/training-pod.ops-patch.json). Kyverno.injects() checks the
    result against credgate's before any run. (With `patchStrategicMerge`,
    Kyverno spent 22 to 28 ms of CPU per pod here.)"""
    ops = json.loads((REPO / "benches/data/training-pod.ops-patch.json").read_text())
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "credgate-peer"},
            "spec": {"background": False, "rules": [{
                "name": "inject-credentials",
                "match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": ["bench-p"]}}]},
                "mutate": {"patchesJson6902": json.dumps(ops)}}]}}


class Kyverno:
    """Kyverno's admission controller, built from its Go module
    (scripts/kyverno-bin) and run out of cluster with its defaults, with the
    policy of kyverno_policy(). It registers its own webhook configurations
    while it runs, so each of its rounds starts it and ends by stopping it and
    removing them."""

    def __init__(self, kubectl, injected_spec):
        self.kubectl = kubectl
        self.dir = pathlib.Path(sh(REPO / "scripts/kyverno-bin").strip())
        sh(kubectl, "apply", "--server-side", "--force-conflicts", "-f", self.dir / "crds")
        subprocess.run([str(kubectl), "create", "namespace", "kyverno"], env=ENV, capture_output=True)
        self.policy = kyverno_policy()
        sh(kubectl, "apply", "-f", "-", stdin=json.dumps(self.policy))
        self.expected = injected_spec
        self.proc = None

    def start(self):
        port, metrics = free_port(), free_port()
        env = dict(ENV, KYVERNO_NAMESPACE="kyverno", KYVERNO_SERVICEACCOUNT_NAME="kyverno", KYVERNO_DEPLOYMENT="kyverno",
                   KYVERNO_POD_NAME="kyverno-bench", INIT_CONFIG="kyverno", METRICS_CONFIG="kyverno-metrics")
        self.proc = start("kyverno", [self.dir / "kyverno", "--kubeconfig", CLUSTER / "kubeconfig",
                                      f"--serverIP=127.0.0.1:{port}", "--webhookServerHost=127.0.0.1", f"--webhookServerPort={port}",
                                      "--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca",
                                      "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair",
                                      "--metricsHost=127.0.0.1", f"--metricsPort={metrics}",
                                      "--controllerRuntimeMetricsAddress=0"], env=env)
        wait_until("Kyverno's webhook for pods", 300, self.injects)
        # The others run all along; Kyverno was just started: warm it up unmeasured.
        sh(POD_CREATES, "bench-p", KYVERNO_WARMUP, 20, "kyverno-warmup")
        sh(self.kubectl, "delete", "pods", "-n", "bench-p", "--all", "--wait=false")
        wait_quiet()

    def injects(self):
        """Whether a server-side dry-run pod create comes back with credgate's injection."""
        if self.proc.poll() is not None:
            raise SystemExit(f"bench: kyverno exited; see {OUT / 'kyverno.log'}")
        pod = training_pod("bench-p")
        pod["metadata"]["name"] = "kyverno-check"
        out = subprocess.run([str(self.kubectl), "create", "--dry-run=server", "-o", "json", "-f", "-"], env=ENV,
                             input=json.dumps(pod), capture_output=True, text=True)
        if out.returncode != 0:
            return False
        spec = json.loads(out.stdout)["spec"]
        same = lambda key, c: sorted(json.dumps(x, sort_keys=True) for x in c.get(key, []))
        return (same("imagePullSecrets", spec) == same("imagePullSecrets", self.expected)
                and same("volumes", spec) == same("volumes", self.expected)
                and all(same(k, c) == same(k, e) for c, e in zip(spec["containers"], self.expected["containers"])
                        for k in ("env", "volumeMounts")))

    def stop(self):
        if self.proc:
            stop(self.proc)
            self.proc = None
        for kind in ("mutating", "validating"):
            subprocess.run([str(self.kubectl), "delete", f"{kind}webhookconfiguration", "-l", KYVERNO_MANAGED],
                           env=ENV, capture_output=True)


class Peers:
    """The configurations the API server can call: none, the null webhook
    (examples/null_webhook: credgate's TLS and HTTP stack answering allowed,
    registered with credgate's rules), credgate and Kyverno, one at a time."""

    def __init__(self, kubectl):
        self.kubectl = kubectl
        self.configs = {kind: json.loads(sh(kubectl, "get", f"{kind}webhookconfiguration", "credgate", "-o", "json"))
                        for kind in ("mutating", "validating")}
        for c in self.configs.values():
            for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
                c["metadata"].pop(key, None)
        null_port = free_port()
        self.null = start("null-webhook", [REPO / "target/release/examples/null_webhook", f"127.0.0.1:{null_port}",
                                           OUT / "certs/tls.crt", OUT / "certs/tls.key"])
        bundle = base64.b64encode((OUT / "certs/ca.crt").read_bytes()).decode()
        self.null_configs = json.loads(json.dumps(self.configs))
        for c in self.null_configs.values():
            for hook in c["webhooks"]:
                path = hook["clientConfig"]["url"].split("/", 3)[3] if hook["clientConfig"].get("url") else ""
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{null_port}/{path}", "caBundle": bundle}
        self.pids = {"credgate": int((CLUSTER / "credgate.pid").read_text()), "null": self.null.pid}
        self.kyverno = Kyverno(kubectl, self.injected_spec()) if KYVERNO_ON else None
        self.apiserver_pid = int((CLUSTER / "kube-apiserver.pid").read_text())

    def injected_spec(self):
        """The training pod's spec as the API server stores it with credgate's
        injection (a server-side dry-run create while credgate is registered)."""
        pod = training_pod("bench-p")
        pod["metadata"]["name"] = "credgate-check"
        return json.loads(sh(self.kubectl, "create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(pod)))["spec"]

    def register(self, which):
        if self.kyverno and which != "kyverno":
            self.kyverno.stop()
        for kind in ("mutating", "validating"):
            subprocess.run([str(self.kubectl), "delete", f"{kind}webhookconfiguration", "credgate", "--ignore-not-found"],
                           env=ENV, capture_output=True)
        chosen = {"credgate": self.configs, "null": self.null_configs}.get(which)
        if chosen:
            sh(self.kubectl, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(chosen.values())}))
        time.sleep(2)  # the API server reloads webhook configurations from its informer
        if which == "kyverno":
            self.kyverno.start()  # returns once a dry-run pod comes back injected
            self.pids["kyverno"] = self.kyverno.proc.pid

    def configurations(self):
        return ("none", "null", "credgate") + (("kyverno",) if self.kyverno else ())

    def close(self):
        self.register("credgate")
        if self.kyverno:
            self.kyverno.stop()
        stop(self.null)


POD_CREATES = REPO / "target/release/examples/pod_create_latency"


def peers(kubectl, p):
    """Pod creates through the API server with no webhook, the null webhook and
    credgate, alternated, at 1 and 20 clients: p50, p99, creates/s, API server
    and webhook CPU per pod, RSS."""
    runs = {which: {1: [], 20: []} for which in p.configurations()}
    run_id = 0
    for i in range(PAIRS):
        for which in p.configurations():
            p.register(which)
            for clients, count in PEER_PODS.items():
                run_id += 1
                hook_pid = p.pids.get(which)
                a0, h0 = cpu_seconds(p.apiserver_pid), cpu_seconds(hook_pid) if hook_pid else 0.0
                r = json.loads(sh(POD_CREATES, "bench-p", count, clients, f"peer{run_id}"))
                a1, h1 = cpu_seconds(p.apiserver_pid), cpu_seconds(hook_pid) if hook_pid else 0.0
                r["apiserver_cpu_ms_per_pod"] = round((a1 - a0) * 1000 / max(1, r["ok"]), 3)
                r["webhook_cpu_ms_per_pod"] = round((h1 - h0) * 1000 / max(1, r["ok"]), 3) if hook_pid else None
                r["webhook_rss_mib"] = round(rss_mib(hook_pid), 1) if hook_pid else None
                runs[which][clients].append(r)
                log(f"peers round {i + 1} {which} {clients} client(s): p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
                    f"{r['creates_per_sec']:.0f}/s, API server {r['apiserver_cpu_ms_per_pod']} ms/pod, webhook {r['webhook_cpu_ms_per_pod']} ms/pod")
                sh(kubectl, "delete", "pods", "-n", "bench-p", "--all", "--wait=false")
                wait_quiet()
    med = lambda xs: round(statistics.median(xs), 3) if xs else None
    return {which: {str(clients): {"runs": rs, **{k: med([r[k] for r in rs if r.get(k) is not None])
                                                 for k in ("p50_ms", "p99_ms", "creates_per_sec", "apiserver_cpu_ms_per_pod",
                                                           "webhook_cpu_ms_per_pod", "webhook_rss_mib")}}
                    for clients, rs in by_clients.items()}
            for which, by_clients in runs.items()}


PROFILE_SECS = int(os.environ.get("BENCH_PROFILE_SECS", "15"))
# Where kube-apiserver's CPU goes per pod: the cumulative time of anchor
# functions (within `focus` when given), from `go tool pprof -top -cum`.
# (label, focus, function name ending)
PROFILE_ANCHORS = [
    ("admission, both rounds", None, "admission.(*reinvoker).Admit"),
    ("mutating webhook calls", None, "mutating.(*mutatingDispatcher).Dispatch"),
    ("  encode the AdmissionReview", "callAttrMutatingHook", "rest.(*Request).Body"),
    ("  HTTP round trip (TLS, HTTP/2)", "callAttrMutatingHook", "rest.(*Request).Do"),
    ("  decode the patch", None, ".DecodePatch"),
    ("  apply the patch", None, "Patch.ApplyIndent"),
    ("  decode the answer and the patched pod", "callAttrMutatingHook", "serializer/json.(*Serializer).Decode"),
    ("  compare the pod before and after", "callAttrMutatingHook", "Equalities.DeepEqual"),
    ("  reinvocation round: compare again", None, "IsOutputChangedSinceLastWebhookInvocation"),
    ("validating webhook calls", None, "validating.(*validatingDispatcher).Dispatch"),
    ("garbage collector", None, "runtime.gcBgMarkWorker"),
]


def pprof_cum(binary, path, focus=None):
    """{function: cumulative seconds} of a CPU profile."""
    import re
    args = ["go", "tool", "pprof", "-top", "-cum", "-nodecount=1000000"] + ([f"-focus={focus}"] if focus else [])
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "mins": 60.0}
    cum = {}
    for line in sh(*args, binary, path).splitlines():
        m = re.match(r"\s*-?[0-9.]+(?:ns|us|µs|ms|s|mins)?\s+[0-9.]+%\s+[0-9.]+%\s+([0-9.]+)(ns|us|µs|ms|s|mins)\s+[0-9.]+%\s+(.*)", line)
        if m:
            cum[m.group(3).replace(" (inline)", "").strip()] = float(m.group(1)) * units[m.group(2)]
    return cum


def profile_per_pod(binary, path, pods):
    """API server CPU per pod (ms) of each of PROFILE_ANCHORS."""
    tables = {}
    out = {}
    for label, focus, ending in PROFILE_ANCHORS:
        if focus not in tables:
            tables[focus] = pprof_cum(binary, path, focus)
        secs = sum(v for name, v in tables[focus].items() if name.endswith(ending))
        out[label] = round(secs * 1000 / max(1, pods), 3)
    return out


def patch_forms():
    """What kube-apiserver's JSON patch library (its version) spends decoding and
    applying each form of the training pod's injection: benches/apiserver_patch."""
    import re
    out = sh("go", "-C", REPO / "benches/apiserver_patch", "test", "-bench", ".", "-run", "XXX", "-benchtime", "2s",
             env=dict(ENV, GOFLAGS="-mod=mod"))
    forms = {}
    for m in re.finditer(r"BenchmarkForms/(.+?)-\d+\s+\d+\s+([0-9.]+) ns/op\s+([0-9.]+) patch-bytes", out):
        forms[m.group(1).replace("_", " ")] = {"us": round(float(m.group(2)) / 1000, 1), "patch_bytes": int(float(m.group(3)))}
    log(f"patch forms: {forms}")
    return forms


def apiserver_profiles(kubectl, p):
    """kube-apiserver CPU profiles (/debug/pprof/profile, PROFILE_SECS long) while
    20 clients create pods, with the null webhook and with credgate."""
    (OUT / "pprof").mkdir(exist_ok=True)
    binary = pathlib.Path(kubectl).parent / "kube-apiserver"
    profiles = {}
    for which in ("null", "credgate"):
        p.register(which)
        count = 300 * (PROFILE_SECS + 2)  # about the whole profile at 20 clients
        creator = subprocess.Popen([str(POD_CREATES), "bench-p", str(count), "20", f"prof-{which}"], env=ENV,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        a0 = cpu_seconds(p.apiserver_pid)
        raw = subprocess.run([str(kubectl), "get", "--raw", f"/debug/pprof/profile?seconds={PROFILE_SECS}"],
                             env=ENV, capture_output=True, check=True).stdout
        a1 = cpu_seconds(p.apiserver_pid)
        r = json.loads(creator.communicate()[0])
        path = OUT / "pprof" / f"kube-apiserver-{which}.pb.gz"
        path.write_bytes(raw)
        pods = r["creates_per_sec"] * PROFILE_SECS  # created while the profile ran
        profiles[which] = {"file": str(path.relative_to(REPO)), "creates_per_sec": r["creates_per_sec"],
                           "apiserver_cpu_ms_per_pod": round((a1 - a0) * 1000 / max(1, pods), 3),
                           "ms_per_pod": profile_per_pod(binary, path, pods)}
        log(f"profile {which}: {profiles[which]}")
        sh(kubectl, "delete", "pods", "-n", "bench-p", "--all", "--wait=false")
        wait_quiet()
    return profiles


def peers_only():
    """`BENCH_ONLY=peers make bench`: only the comparison with the null webhook."""
    OUT.mkdir(parents=True, exist_ok=True)
    sh("cargo", "build", "--release", "--quiet", "--bins", "--examples")
    bins = pathlib.Path(sh(REPO / "scripts/k8s-bins").strip())
    kubectl = bins / "kubectl"
    sh(REPO / "scripts/dev-cluster", "down")
    sh(REPO / "scripts/dev-cluster", "up")
    ENV["KUBECONFIG"] = str(CLUSTER / "kubeconfig")
    results = {"machine": machine(), "settings": {"pairs": PAIRS, "pods": PEER_PODS}}
    try:
        fixtures(kubectl)
        sh(REPO / "target/release/credgate", "--log-level", "warn", "certs", "--out", OUT / "certs", "--dns", "localhost", "--ip", "127.0.0.1")
        wait_quiet()
        p = Peers(kubectl)
        if os.environ.get("BENCH_ONLY") != "profile":
            results["peers"] = peers(kubectl, p)
        if os.environ.get("BENCH_PROFILE", "1") != "0":
            results["apiserver_profiles"] = apiserver_profiles(kubectl, p)
            results["patch_forms"] = patch_forms()
        p.close()
    finally:
        for p in started:
            stop(p)
        sh(REPO / "scripts/dev-cluster", "down")
    (OUT / "peers.json").write_text(json.dumps(results, indent=2))
    if "peers" in results:
        print(peers_table(results["peers"]))
    if "apiserver_profiles" in results:
        print(profiles_table(results["apiserver_profiles"]))
        print(forms_table(results["patch_forms"]))


def profiles_table(profiles):
    labels = list(next(iter(profiles.values()))["ms_per_pod"])
    lines = [f"{'kube-apiserver CPU ms per pod, 20 clients (pprof)':<50}" + "".join(f"{w:>12}" for w in profiles)]
    lines.append(f"  {'pods/s':<48}" + "".join(f"{round(v['creates_per_sec']):>12}" for v in profiles.values()))
    lines.append(f"  {'all of the API server (/proc)':<48}" + "".join(f"{v['apiserver_cpu_ms_per_pod']:>12}" for v in profiles.values()))
    for label in labels:
        lines.append(f"  {label:<48}" + "".join(f"{v['ms_per_pod'][label]:>12}" for v in profiles.values()))
    return "\n".join(lines)


def forms_table(forms):
    lines = [f"{'the API server applying the patch (its library)':<50}{'us':>8}{'bytes':>8}"]
    lines += [f"  {name:<48}{v['us']:>8}{v['patch_bytes']:>8}" for name, v in sorted(forms.items())]
    return "\n".join(lines)


def peers_table(p):
    lines = [f"{'pod creates through the API server':<40}{'p50 ms':>8}{'p99 ms':>8}{'pods/s':>8}{'API srv ms/pod':>16}{'hook ms/pod':>13}{'RSS MiB':>9}"]
    for which, by_clients in p.items():
        for clients, m in by_clients.items():
            fmt = lambda v, w: f"{v:>{w}}" if v is not None else f"{'-':>{w}}"
            lines.append(f"  {which + ', ' + clients + ' client(s)':<38}{fmt(m['p50_ms'], 8)}{fmt(m['p99_ms'], 8)}{fmt(round(m['creates_per_sec']), 8)}"
                         f"{fmt(m['apiserver_cpu_ms_per_pod'], 16)}{fmt(m['webhook_cpu_ms_per_pod'], 13)}{fmt(m['webhook_rss_mib'], 9)}")
    return "\n".join(lines)


def main():
    global OHA
    OUT.mkdir(parents=True, exist_ok=True)
    log("building (release)")
    sh("cargo", "build", "--release", "--quiet", "--bins", "--examples")
    OHA = sh(REPO / "scripts/oha-bin").strip()
    bins = pathlib.Path(sh(REPO / "scripts/k8s-bins").strip())
    kubectl = bins / "kubectl"
    sh(REPO / "scripts/dev-cluster", "down")
    log("starting the local control plane")
    sh(REPO / "scripts/dev-cluster", "up")
    kubeconfig = CLUSTER / "kubeconfig"
    ENV["KUBECONFIG"] = str(kubeconfig)
    results = {"machine": machine(), "settings": {"seconds_per_run": SECS, "pairs": PAIRS, "connections": CONNECTIONS}}
    try:
        db = fixtures(kubectl)
        sh(REPO / "target/release/credgate", "--log-level", "warn", "certs", "--out", OUT / "certs", "--dns", "localhost", "--ip", "127.0.0.1")
        if not SCALE_ONLY and not CEILING_ONLY:
            log(f"peers: no webhook / null webhook / credgate, {PAIRS} rounds, 1 and 20 clients")
            wait_quiet()
            p = Peers(kubectl)
            results["peers"] = peers(kubectl, p)
            if os.environ.get("BENCH_PROFILE", "1") != "0":
                results["apiserver_profiles"] = apiserver_profiles(kubectl, p)
                results["patch_forms"] = patch_forms()
            p.close()
        port, admin, base_port = free_port(), free_port(), free_port()
        credgate, ready = start_credgate(kubeconfig, port, admin)
        bodies = OUT / "bodies"
        bodies.mkdir(exist_ok=True)
        dockercfg = json.dumps({"auths": {"registry.example": {"username": "u", "password": "bench-only"}}})
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                  "metadata": {"name": "new-registry", "namespace": "bench-p", "labels": {"run.ai/resource": "docker-registry"}},
                  "data": {".dockerconfigjson": b64(dockercfg)}}
        db_old = {k: db[k] for k in ("apiVersion", "kind", "metadata", "type")}
        shared = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shared", "namespace": "runai",
                  "labels": {"run.ai/resource": "generic", "run.ai/cluster-wide": "true"}}}
        files = {
            "mutate": request("Pod", "pods", "bench-p", "train", "CREATE", obj=training_pod("bench-p")),
            "validate": request("Secret", "secrets", "bench-p", "new-registry", "CREATE", obj=secret),
            "delete": request("Secret", "secrets", "bench-p", "db", "DELETE", old=db_old),
            "delete-cluster": request("Secret", "secrets", "runai", "shared", "DELETE", old=shared),
        }
        for name, req in files.items():
            (bodies / f"{name}.json").write_bytes(review(req))
        answer = post(f"https://127.0.0.1:{port}/mutate", (bodies / "mutate.json").read_bytes())
        assert b'"patch"' in answer, answer
        delete_answer = json.loads(post(f"https://127.0.0.1:{port}/validate", (bodies / "delete.json").read_bytes()))
        assert delete_answer["response"]["allowed"] is False, delete_answer
        (OUT / "canned-answer.json").write_bytes(answer)
        results["answer_bytes"] = len(answer)
        if not SCALE_ONLY:
            ceiling(results, bodies, port, base_port, answer)
        if CEILING_ONLY:
            (OUT / "ceiling.json").write_text(json.dumps(results, indent=2))
            print(json.dumps({k: results[k] for k in ("ceiling", "fixed_rate_mutate_1000")}, indent=2))
            return

        decision_bodies = {"mutate": ("mutate", bodies / "mutate.json"), "delete_in_use": ("validate", bodies / "delete.json"),
                           "delete_cluster_scope": ("validate", bodies / "delete-cluster.json")}
        control_port = free_port()
        control = start_control(control_port, "empty")
        pinned = pin_for_decisions(credgate.pid, control.pid)
        quiet = wait_quiet(limit=0.10, secs=600)
        # Measured once credgate has settled too (its first reconciles after /readyz).
        settled = wait_quiet(limit=0.10, secs=120)
        measured, cores = control_plane_cores(lambda: decisions(port, decision_bodies, (control_port, control.pid), credgate.pid), credgate=credgate.pid,
                                              control=control.pid)
        empty = {"ready_s": round(ready, 2), "rss_mib": round(rss_mib(credgate.pid), 1), "cpu_busy_before": quiet,
                 "cpu_busy_after_ready": settled, "control_plane_cores_during": cores, "decisions": measured}
        stop(credgate)
        stop(control)
        unpin()

        log(f"scale: filling the apiserver with {NAMESPACES} namespaces, {NAMESPACES * SECRETS_PER_NS} Secrets, {NAMESPACES * PODS_PER_NS} pods")
        fill = json.loads(sh(REPO / "target/release/examples/fill_cluster", NAMESPACES, SECRETS_PER_NS, PODS_PER_NS, 32))
        log("waiting until the control plane has settled (at most 10% of the machine busy, 10 minutes at most)")
        quiet = wait_quiet(limit=0.10, secs=600)
        credgate, ready = start_credgate(kubeconfig, port, admin)
        rss = round(rss_mib(credgate.pid), 1)
        control = start_control(control_port, "full")
        pin_for_decisions(credgate.pid, control.pid)
        settled = wait_quiet(limit=0.10, secs=120)
        measured, cores = control_plane_cores(lambda: decisions(port, decision_bodies, (control_port, control.pid), credgate.pid), credgate=credgate.pid,
                                              control=control.pid)
        full = {"ready_s": round(ready, 2), "rss_mib": rss, "cpu_busy_before": quiet,
                "cpu_busy_after_ready": settled, "control_plane_cores_during": cores, "decisions": measured}
        stop(credgate)
        stop(control)
        unpin()
        measured_keys = list(decision_bodies) + ["control_mutate"]
        results["scale"] = {"fill": fill, "empty": empty, "full": full, "pinned": pinned,
                            "p99_ratio": {k: round(full["decisions"][k]["p99_ms"] / empty["decisions"][k]["p99_ms"], 3) for k in measured_keys},
                            "p50_ratio": {k: round(full["decisions"][k]["p50_ms"] / empty["decisions"][k]["p50_ms"], 3) for k in measured_keys}}

    finally:
        for p in started:
            stop(p)
        sh(REPO / "scripts/dev-cluster", "down")

    if SCALE_ONLY:
        (OUT / "scale.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results["scale"], indent=2))
        return
    log("criterion micro-benchmarks")
    crit = subprocess.run(["cargo", "bench", "--bench", "decisions", "--", "--noplot"], cwd=REPO, capture_output=True, text=True)
    results["criterion"] = [l.strip() for l in crit.stdout.splitlines() if "time:" in l or (l and not l.startswith(" ") and "/" in l)]
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    text = table(results)
    (OUT / "results.txt").write_text(text)
    print(text)


def ceiling(results, bodies, port, base_port, answer):
    """The ceiling against the canned-answer baseline, and /mutate at a fixed rate."""
    baseline = start("baseline", [REPO / "target/release/examples/null_webhook", f"127.0.0.1:{base_port}",
                                  OUT / "certs/tls.crt", OUT / "certs/tls.key", OUT / "canned-answer.json"])
    wait_until("baseline", 30, lambda: post(f"https://127.0.0.1:{base_port}/", b"{}") == answer)

    log(f"ceiling: {PAIRS} pairs x 2 endpoints x 2 runs x {SECS}s")
    runs = {"mutate": [], "validate": []}
    for i in range(PAIRS):
        for endpoint in ("mutate", "validate"):
            body = bodies / f"{endpoint}.json"
            a = oha(f"https://127.0.0.1:{base_port}/", body, SECS)
            b = oha(f"https://127.0.0.1:{port}/{endpoint}", body, SECS)
            runs[endpoint].append({"baseline": a, "credgate": b, "ratio": round(b["rps"] / a["rps"], 3)})
            log(f"pair {i + 1} {endpoint}: baseline {a['rps']} req/s, credgate {b['rps']} req/s, ratio {b['rps'] / a['rps']:.3f}")
    stop(baseline)
    results["ceiling"] = {e: {"runs": r, "median_ratio": statistics.median(x["ratio"] for x in r)} for e, r in runs.items()}

    log("fixed rate: /mutate at 1000 req/s")
    results["fixed_rate_mutate_1000"] = oha(f"https://127.0.0.1:{port}/mutate", bodies / "mutate.json", SECS, rate=1000)


def table(r):
    m = r["machine"]
    lines = [f"credgate bench on {m['cpus']} cores ({m['cpu']}), {m['memory_gib']} GiB; oha, {CONNECTIONS} connections, {SECS}s runs",
             "", f"{'ceiling (req/s)':<34}{'baseline':>12}{'credgate':>12}{'ratio':>8}"]
    for e, c in r["ceiling"].items():
        for i, run in enumerate(c["runs"]):
            lines.append(f"  /{e} pair {i + 1:<22}{run['baseline']['rps']:>12.0f}{run['credgate']['rps']:>12.0f}{run['ratio']:>8.3f}")
        target = {"mutate": ">= 0.6, goal 0.75", "validate": ">= 0.8"}[e]
        lines.append(f"  /{e} median ratio (target {target})".ljust(58) + f"{c['median_ratio']:>8.3f}")
        p = c["runs"][-1]["credgate"]
        lines.append(f"  /{e} latency at full load: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, p99.9 {p['p99_9_ms']} ms")
    f = r["fixed_rate_mutate_1000"]
    lines += ["", f"/mutate at 1,000 req/s: {f['rps']} req/s served, p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms (target <= 1), p99.9 {f['p99_9_ms']} ms (target <= 5)"]
    s = r["scale"]
    lines += ["", f"scale: {s['fill']['namespaces']} namespaces + {s['fill']['objects']} objects created in {s['fill']['seconds']:.0f} s ({s['fill']['errors']} errors)",
              f"  {'':<24}{'empty':>12}{'full':>12}{'ratio':>8}",
              f"  {'time to /readyz (s)':<24}{s['empty']['ready_s']:>12}{s['full']['ready_s']:>12}",
              f"  {'RSS after sync (MiB)':<24}{s['empty']['rss_mib']:>12}{s['full']['rss_mib']:>12}   (target <= 150)"]
    lines.append(f"  {'machine busy before':<24}{s['empty']['cpu_busy_before']:>12}{s['full']['cpu_busy_before']:>12}")
    lines.append(f"  {'busy after /readyz':<24}{s['empty']['cpu_busy_after_ready']:>12}{s['full']['cpu_busy_after_ready']:>12}")
    for proc in s["full"]["control_plane_cores_during"]:
        lines.append(f"  {proc + ' cores':<24}{s['empty']['control_plane_cores_during'][proc]:>12}{s['full']['control_plane_cores_during'][proc]:>12}")
    for k in s["p99_ratio"]:
        lines.append(f"  {k + ' p99 (ms)':<24}{s['empty']['decisions'][k]['p99_ms']:>12}{s['full']['decisions'][k]['p99_ms']:>12}{s['p99_ratio'][k]:>8}")
    runs = {state: [run for d in s[state]["decisions"].values() for run in d["runs"]] for state in ("empty", "full")}
    aside = {state: sum(len(run.get("set_aside", [])) for run in rs) for state, rs in runs.items()}
    busy = {state: sum(not run.get("quiet", True) for run in rs) for state, rs in runs.items()}
    lines.append(f"  {'runs set aside (busy)':<24}{aside['empty']:>12}{aside['full']:>12}   (control plane > {QUIET_CORES} cores during the run)")
    lines.append(f"  {'kept though busy':<24}{busy['empty']:>12}{busy['full']:>12}   (after {QUIET_TRIES} tries; and {', '.join(sorted(CALLS_API))}, which asks the API server)")
    lines += ["", peers_table(r["peers"])]
    if "apiserver_profiles" in r:
        lines += ["", profiles_table(r["apiserver_profiles"]), "", forms_table(r["patch_forms"])]
    lines += ["", "criterion:"] + [f"  {l}" for l in r["criterion"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        if os.environ.get("BENCH_ONLY") in ("peers", "profile"):
            peers_only()
        else:
            main()
    finally:
        for p in started:
            stop(p)
