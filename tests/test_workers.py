"""A real Celery worker reports its host, and the Workers page and API show it online."""

import pytest

from webapp.hosts.models import WorkerHost

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_it_reports_capabilities_through_a_real_worker(worker_host):
    host = worker_host
    caps = host.capabilities
    assert host.is_online
    assert sorted(host.queues) == ["optimize", "train"]
    assert caps["cpu"]["model"] and caps["cpu"]["logical_cores"] >= 1
    assert "avx2" in caps["cpu"]["isa"] or caps["cpu"]["arch"] not in {"x86_64", "X86_64"}
    assert caps["memory_bytes"] > 2**30
    assert caps["torch"]["version"].startswith("2.")
    assert isinstance(caps["torch"]["cuda_gpus"], list)
    assert "CPU" in [device["name"] for device in caps["openvino"]["devices"]]


def test_it_shows_the_worker_online_on_the_page_and_api(worker_host, client, alice):
    client.force_login(alice)
    page = client.get("/workers/")
    hostname = worker_host.hostname
    assert page.status_code == 200
    assert hostname in page.content.decode()
    assert "1 online" in page.content.decode()
    api = client.get("/api/v1/workers/").json()
    assert [w["online"] for w in api if w["hostname"] == hostname] == [True]


def test_it_marks_a_stopped_worker_offline(child_env, log_dir):
    from tests.servers import start_worker, wait_for

    worker = start_worker(child_env, log_dir, name="shortlived", queues="optimize")
    wait_for(lambda: WorkerHost.objects.filter(hostname__startswith="shortlived@", reported_at__isnull=False).exists(),
             timeout=120, what="shortlived worker report", interval=0.5)
    worker.stop()
    host = WorkerHost.objects.get(hostname__startswith="shortlived@")
    assert host.stopped_at is not None
    assert not host.is_online
