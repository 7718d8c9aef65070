"""Files Vintner writes from user text (classify.py, SHA256SUMS, download names) carry that text as
data: hostile model names, labels and file names are run and checked, and none of them becomes code."""

import ast
import hashlib
import html
import io
import math
import os
import subprocess
import sys
import tokenize
import zipfile
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from PIL import Image

from tests.helpers import SMALL, make_artifact, signed_in
from tests.jobs_helpers import make_project
from webapp.core.files import store_copy
from webapp.optimize.deploy import snippet
from webapp.registry.models import Model

pytestmark = pytest.mark.django_db
BIAS = [2.0, 1.0, 0.0]  # the tiny network's scores, whatever the picture: labels print in this order
BREAKS = '"""\n\r\u2028\u2029\x85 {} {0} {LABELS} \\ \\n '  # what could end a string, a line or a template
# Each tries to create "pwned" in the folder classify.py runs in.
PAYLOAD = 'x"""; import os; os.system("touch pwned"); """'
NAME = PAYLOAD + BREAKS
LABELS = ["a'] ; __import__('os').system('touch pwned') #" + BREAKS,
          'b"""\n__import__("os").system("touch pwned")\n"""',
          "c\u2028" + BREAKS + "'''"]


def tiny_ir(folder: Path) -> list[Path]:
    """A real IR taking [1, 3, 16, 16] whose scores are BIAS for any picture."""
    folder.mkdir()
    image = ops.parameter([1, 3, 16, 16], np.float32, name="x")
    mean = ops.reduce_mean(image, np.array([2, 3]), keep_dims=False)
    scores = ops.add(ops.matmul(mean, np.zeros((3, 3), np.float32), False, False), np.array([BIAS], np.float32))
    ov.save_model(ov.Model([scores], [image], "tiny"), folder / "model.xml", compress_to_fp16=False)
    return [folder / "model.xml", folder / "model.bin"]


def stored(artifact, paths: list[tuple[Path, str]]):
    """The artifact's files, really in storage under the given names."""
    artifact.files = []
    for path, name in paths:
        store_copy(path, f"{artifact.storage_prefix}/{name}")
        data = path.read_bytes()
        artifact.files.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    artifact.save(update_fields=["files"])
    return artifact


def ir_artifact(team, user, tmp_path: Path, name: str, labels: list[str]):
    model = Model.objects.create(project=make_project(team), name=name, labels=labels, preprocessing=SMALL,
                                 created_by=user)
    return stored(make_artifact(model), [(path, path.name) for path in tiny_ir(tmp_path / "ir")])


@pytest.fixture
def hostile(team_a, alice, tmp_path):
    """An IR artifact of a model whose name and labels each try to run a command."""
    return ir_artifact(team_a, alice, tmp_path, NAME, LABELS)


def downloaded(client, artifact, folder: Path):
    response = client.get(f"/api/v1/artifacts/{artifact.id}/download/")
    assert response.status_code == 200
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    bundle.extractall(folder)
    return response, bundle


# --- classify.py ---------------------------------------------------------------------------------


def test_it_writes_names_and_labels_only_as_string_constants(hostile):
    program = snippet(hostile)
    tree = ast.parse(program)
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") in ("TITLE", "LABELS")}
    assert values["TITLE"].startswith(NAME + ": artifact") and values["LABELS"] == LABELS
    # the payloads are in those constants and nowhere else: not the docstring, a comment or any code
    strings = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    assert [s for s in strings if "pwned" in s] == [values["TITLE"], *LABELS[:2]]
    tokens = tokenize.generate_tokens(io.StringIO(program).readline)
    assert not [t for t in tokens if t.type != tokenize.STRING and "pwned" in t.string]
    assert "pwned" not in ast.get_docstring(tree)
    assert "os" not in {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert len(program.splitlines()) == program.count("\n")  # no raw \r, U+2028 or the like anywhere


@pytest.mark.parametrize("name", [PAYLOAD, NAME], ids=["payload", "payload and breaks"])
def test_it_runs_the_downloaded_program_without_running_the_names(name, team_a, alice, tmp_path):
    artifact = ir_artifact(team_a, alice, tmp_path, name, LABELS)
    client = signed_in(alice)
    folder = tmp_path / "deploy"
    downloaded(client, artifact, folder)
    response = client.get(f"/artifacts/{artifact.id}/classify.py")
    assert response.status_code == 200
    (folder / "classify.py").write_bytes(response.content)
    Image.new("RGB", (24, 20), "red").save(tmp_path / "picture.png")
    printed = subprocess.run([sys.executable, "classify.py", str(tmp_path / "picture.png")], cwd=folder,
                             capture_output=True, timeout=120, env={**os.environ, "PYTHONUTF8": "1"})
    assert printed.returncode == 0, printed.stderr.decode()
    assert not (folder / "pwned").exists()
    total = sum(math.exp(score - max(BIAS)) for score in BIAS)
    expected = [f"{label}\t{math.exp(score - max(BIAS)) / total:.3f}\n" for label, score in zip(LABELS, BIAS)]
    assert printed.stdout.decode() == "".join(expected)  # bytes: \r and U+2028 as they are, not as line ends


# --- the zip and its names -----------------------------------------------------------------------


def test_it_escapes_file_names_in_sha256sums_as_sha256sum_does(hostile, alice, tmp_path):
    forged = f"{'0' * 64}  model.xml"
    (tmp_path / "data").write_bytes(b"external data")
    names = [f"data\n{forged}", "back\\slash\r.bin"]
    stored(hostile, [(tmp_path / "ir" / "model.xml", "model.xml"), (tmp_path / "ir" / "model.bin", "model.bin"),
                     *[(tmp_path / "data", name) for name in names]])
    folder = tmp_path / "download"
    _, bundle = downloaded(signed_in(alice), hostile, folder)
    assert sorted(bundle.namelist()) == sorted(["SHA256SUMS", "metadata.json", "model.bin", "model.xml", *names])
    sums = bundle.read("SHA256SUMS").decode().split("\n")
    assert sums[-1] == "" and len(sums) == 6  # one line per file, none added by a name
    digest = hashlib.sha256(b"external data").hexdigest()
    assert f"\\{digest}  data\\n{forged}" in sums and f"\\{digest}  back\\\\slash\\r.bin" in sums
    checked = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.count(": OK") == 5, checked.stdout + checked.stderr


def test_it_names_downloads_with_plain_characters_only(team_a, alice, tmp_path):
    artifact = ir_artifact(team_a, alice, tmp_path, '-rf ./"quoted"\nname; ü', ["a", "b", "c"])
    stem = f"rf_.__quoted__name__ü-openvino_ir-fp32-{artifact.id}"
    client = signed_in(alice)
    response, _ = downloaded(client, artifact, tmp_path / "download")
    assert response["Content-Disposition"] == f"attachment; filename*=utf-8''{stem.replace('ü', '%C3%BC')}.zip"
    page = html.unescape(client.get(f"/artifacts/{artifact.id}/deploy/").content.decode())
    assert f"unzip '{stem}.zip' -d '{stem}' && cd '{stem}'" in page
