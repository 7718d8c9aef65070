"""deploy/kubernetes against the Kubernetes schemas (kubernetes-validate, offline, strict) and the
code it starts; no cluster. KEDA's ScaledObject, a custom resource the schemas do not know, is
checked for what matters here: it scales a worker Deployment of these files on its own queue's list."""

import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from django.conf import settings

from webapp.celery import QUEUES
from workers.pipeline.params import GPU_QUEUES

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [(path.name, doc) for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
             for doc in yaml.safe_load_all(path.read_text()) if doc]
VERSION = "1.33.0"  # the oldest Kubernetes these files are for (appArmorProfile: 1.30)


def of_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCUMENTS if doc["kind"] == kind}


@pytest.mark.parametrize("name,doc", [(n, d) for n, d in DOCUMENTS if d["kind"] != "ScaledObject"],
                         ids=lambda value: value if isinstance(value, str) else value["metadata"]["name"])
def test_it_is_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_every_queue_has_a_worker_that_keda_scales_on_that_queues_list():
    deployments, scaled = of_kind("Deployment"), of_kind("ScaledObject")
    queues = {}
    for scaler in scaled.values():
        assert scaler["apiVersion"] == "keda.sh/v1alpha1"
        target = deployments[scaler["spec"]["scaleTargetRef"]["name"]]
        argv = target["spec"]["template"]["spec"]["containers"][0]["command"]
        queue = argv[argv.index("-Q") + 1]
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == queue
        queues[queue] = (target, scaler)
    # trainings on several GPUs of one host wait for a pod that owns that many, which a site adds
    # as its GPUs allow (docs/operations.md); every other queue has its workers here
    assert set(queues) == set(QUEUES) - set(GPU_QUEUES)
    # a scale-down must not kill a long training: the pod gets longer than the longest job to finish
    train, _ = queues["train"]
    assert train["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > settings.JOB_TIME_LIMIT
    container = train["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and container["command"][container["command"].index("-c") + 1] == "1"
    # the reconciler runs in the workers: one stays up
    assert max(scaler["spec"]["minReplicaCount"] for _, scaler in queues.values()) >= 1


def test_it_runs_the_projects_own_commands_and_settings():
    source = (ROOT / "webapp" / "settings.py").read_text()
    config = of_kind("ConfigMap")["vintner-config"]["data"]
    for name in config:
        assert f'"{name}"' in source, f"the ConfigMap sets {name}, which webapp/settings.py does not read"
    assert not {"SECRET_KEY", "S3_SECRET_KEY", "DATABASE_URL"} & set(config), "secrets belong in the Secret"
    commands = [shlex.join(c["command"]) for kind in ("Deployment", "Job") for doc in of_kind(kind).values()
                for c in doc["spec"]["template"]["spec"]["containers"]]
    assert any("webapp.asgi:application" in c for c in commands)
    assert any(re.search(r"manage\.py migrate --noinput", c) for c in commands)
