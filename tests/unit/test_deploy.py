"""The Kubernetes manifests (docker/kubernetes) agree with the code they deploy.

No Kubernetes API is reachable here, so the manifests are checked for consistency: the
orchestrator's worker list is the StatefulSet's pods, Triton loads what the repository needs,
and every orchestrator flag is one `argus serve` accepts."""

from __future__ import annotations

from orchestrator.paths import PROJECT_ROOT


import yaml

from orchestrator.triton.repository import CACHE_MODELS, RepositoryConfig, models_to_load

KUBE = PROJECT_ROOT / "docker" / "kubernetes"


def docs(name):
    return {d["kind"]: d for d in yaml.safe_load_all((KUBE / name).read_text())}


def test_orchestrator_workers_are_the_statefulset_pods():
    triton, orch = docs("triton.yaml"), docs("orchestrator.yaml")
    sts = triton["StatefulSet"]
    args = orch["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    workers = next(a for a in args if a.startswith("--workers=")).split("=", 1)[1].split(",")
    service = sts["spec"]["serviceName"]
    assert workers == [f"{sts['metadata']['name']}-{i}.{service}:8001" for i in range(sts["spec"]["replicas"])]
    assert triton["Service"]["spec"]["clusterIP"] == "None"  # headless: stable per-pod DNS names


def test_triton_pods_run_the_repository_as_the_launcher_does():
    sts = docs("triton.yaml")["StatefulSet"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert "--model-control-mode=explicit" in args and "--disable-auto-complete-config" in args
    loaded = [a.split("=", 1)[1] for a in args if a.startswith("--load-model=")]
    assert loaded == models_to_load(RepositoryConfig(), with_cache=False)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_cache_is_its_own_pod_with_a_volume_and_everyone_points_at_it():
    cache, triton, orch = docs("cache.yaml"), docs("triton.yaml"), docs("orchestrator.yaml")
    sts = cache["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]["containers"][0]
    assert sts["spec"]["replicas"] == 1  # one writer
    assert [a.split("=", 1)[1] for a in pod["args"] if a.startswith("--load-model=")] == CACHE_MODELS
    assert {"name": "ARGUS_CACHE_DIR", "value": "/cache"} in pod["env"] and pod["volumeMounts"][0]["mountPath"] == "/cache"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == pod["volumeMounts"][0]["name"]
    endpoint = f"{sts['metadata']['name']}-0.{sts['spec']['serviceName']}:8001"
    worker_env = triton["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ARGUS_CACHE_URL", "value": endpoint} in worker_env
    args = orch["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--cache={endpoint}" in args


def test_orchestrator_flags_exist_and_auth_comes_from_a_secret():
    import typer.main

    from orchestrator.cli import app

    serve = typer.main.get_command(app).commands["serve"]
    known = {opt for p in serve.params for opt in getattr(p, "opts", []) if opt.startswith("--")}
    assert "--policy" in known
    container = docs("orchestrator.yaml")["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    flags = [a.split("=", 1)[0] for a in container["args"] if a.startswith("--")]
    assert set(flags) <= known, set(flags) - known
    assert container["args"][:2] == ["argus", "serve"]
    assert container["env"][0]["name"] == "ARGUS_AUTH_TOKEN" and "secretKeyRef" in container["env"][0]["valueFrom"]
