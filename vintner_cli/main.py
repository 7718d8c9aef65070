"""`vintner <noun> <verb>`: the command line of a Vintner server.

Exit codes: 0 success; 1 the job failed or was cancelled; 2 a usage error or a request the
server refused (its message is printed); 130 interrupted (a followed job goes on).
"""

import argparse
import getpass
import hashlib
import json
import os
import sys
from pathlib import Path

import requests

from vintner_cli import __version__
from vintner_cli.client import ApiError, Client, attachment_name
from vintner_cli.config import ConfigError, forget, resolve, save
from vintner_cli.follow import follow
from vintner_cli.output import duration, flatten, print_fields, print_json, print_table, when
from vintner_cli.progress import JobView, Transfer, human_bytes, human_seconds, note
from vintner_cli.upload import DEFAULT_CHUNK, Finished, parse_size, upload_file

EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
ARTIFACT_KINDS = ("convert", "quantize", "benchmark", "evaluate")  # POST artifacts/<id>/<kind>/


SUBMIT_EXAMPLES = """examples:
  vintner jobs submit probe --project 3 -p rounds=5 -p queue=train
  vintner jobs submit train --project 3 --dataset 7 -p model_name=pets -p architecture=resnet18 -p epochs=20
  vintner jobs submit convert --artifact 12 -p shape=dynamic_batch -p precision=fp16
  vintner jobs submit quantize --artifact 15 --dataset 7 -p method=accuracy -p max_drop=0.5
  vintner jobs submit benchmark --artifact 16 -p seconds=20 -p 'hints=["latency"]'
  vintner jobs submit evaluate --artifact 16 --dataset 7 -p split=test

The parameters are the API's (see /api/docs/ on the server); the server checks them."""


class UsageError(Exception):
    """Options that do not fit together (exit code 2, like argparse's own errors)."""


# --- plumbing ---------------------------------------------------------------------------------


def connect(args) -> Client:
    settings = resolve(args.url)
    if not settings.url:
        raise ConfigError("No server given: log in first (vintner login --url http://host:8000) or set VINTNER_URL.")
    if not settings.token:
        raise ConfigError(f"Not logged in to {settings.url}: run `vintner login` (or set VINTNER_TOKEN).")
    return Client(settings.url, settings.token)


def param_value(text: str):
    """`3` → 3, `0.2` → 0.2, `true` → True, `["a"]` → a list; anything else stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def params_from(args) -> dict:
    params: dict = {}
    if args.params_json:
        try:
            params = json.loads(args.params_json)
        except ValueError as error:
            raise UsageError(f"--params-json is not JSON: {error}.") from None
        if not isinstance(params, dict):
            raise UsageError("--params-json must be a JSON object, like '{\"rounds\": 3}'.")
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p takes key=value, not “{item}”.")
        params[key.strip()] = param_value(value)
    return params


def follow_job(client: Client, job_id: int, args, *, show_result: bool = True) -> tuple[int, dict]:
    """Follow to the end and say how it ended; returns (exit code, the job as it ended)."""
    job = client.get(f"jobs/{job_id}/", what=f"Job {job_id}")
    try:
        with JobView(job, logs=sys.stderr if args.json else sys.stdout) as view:
            job = follow(client, job, view)
    except KeyboardInterrupt:
        note(f"\nStopped following job #{job_id}; it goes on. Stop it with: vintner jobs cancel {job_id}")
        raise SystemExit(EXIT_INTERRUPTED) from None
    took = duration(job.get("started_at"), job.get("finished_at"))
    took_text = f" in {human_seconds(took)}" if took is not None else ""
    if job["state"] == "succeeded":
        if not args.json:
            print(f"Job #{job['id']} {job['kind']} succeeded{took_text}.")
            if show_result:
                print_fields((f"  {name}", value) for name, value in flatten(job.get("result") or {}))
        return EXIT_OK, job
    if job["state"] == "cancelled":
        note(f"Job #{job['id']} {job['kind']} was cancelled{took_text}." + (f" {job['error']}" if job.get("error") else ""))
    else:
        note(f"Job #{job['id']} {job['kind']} failed{took_text}: {job.get('error') or 'no reason given.'}")
    return EXIT_JOB_FAILED, job


def submitted(client: Client, job: dict, args) -> int:
    """After a submit: follow the job, or hand its id (or JSON) to the script that asked."""
    note(f"Submitted {job['kind']} job #{job['id']} ({job['state']} on the {job['queue']} queue).")
    if args.no_follow:
        if args.json:
            print_json(job)
        else:
            print(job["id"])
        return EXIT_OK
    code, job = follow_job(client, job["id"], args)
    if args.json:
        print_json(job)
    return code


def create_from_uploads(client: Client, args, finished: list[Finished], kind: str, body: dict) -> dict:
    """POST projects/<id>/<kind>/ with the uploads in `body`; a used upload leaves the local cache."""
    try:
        created = client.post(f"projects/{args.project}/{kind}/", body, what=f"Project {args.project}")
    except ApiError as error:
        if "already used" in str(error):  # a stale cache entry: the next run uploads anew
            for upload in finished:
                upload.forget()
        raise
    for upload in finished:
        upload.forget()
    return created


def follow_created(client: Client, args, created: dict, job_id: int, path: str, show) -> int:
    """After an upload became a dataset or artifact: follow the job that checks it, then print it as asked."""
    code = EXIT_OK
    if not args.no_follow:
        code, _ = follow_job(client, job_id, args, show_result=False)
        created = client.get(path)
    if args.json:
        print_json(created)
    elif args.no_follow:
        print(created["id"])
    elif code == EXIT_OK:
        show(created)
    return code


# --- session ----------------------------------------------------------------------------------


def cmd_login(args) -> int:
    url = resolve(args.url).url
    if not url:
        raise UsageError("Which server? Give --url http://host:8000 (or set VINTNER_URL).")
    username = args.username or input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {username} at {url}: ")
    try:
        token = Client(url, None).token_for(username, password)
    except ApiError as error:
        raise ApiError(f"Login failed: {error}", error.status) from None
    path = save(url=url, token=token, username=username)
    note(f"Logged in to {url} as {username}. The token is kept in {path} (readable by you only).")
    return EXIT_OK


def cmd_logout(args) -> int:
    settings = resolve(args.url)
    if settings.username and settings.token:  # the stored login (a VINTNER_TOKEN is the caller's to keep)
        try:
            Client(settings.url, settings.token).request("DELETE", "auth/token/")
            note(f"The token is revoked at {settings.url}: every machine logged in as {settings.username} "
                 "must log in again.")
        except ApiError as error:
            note(f"The server did not revoke the token ({error}); it is forgotten here all the same.")
    if forget():
        note("Logged out: the token is no longer kept on this machine.")
    else:
        note("Not logged in.")
    return EXIT_OK


def cmd_whoami(args) -> int:
    settings = resolve(args.url)
    client = connect(args)
    teams = client.get("teams/")
    if args.json:
        print_json({"url": client.url, "username": settings.username, "teams": teams})
        return EXIT_OK
    who = settings.username or "(token from VINTNER_TOKEN)"
    print(f"{who} at {client.url}")
    print_table(teams, [("team", "id"), ("name", "name"), ("role", "role")])
    return EXIT_OK


# --- projects, datasets, models, artifacts ----------------------------------------------------


def cmd_projects_list(args) -> int:
    client = connect(args)
    projects = client.get("projects/", **({"team": args.team} if args.team else {}))
    if args.json:
        print_json(projects)
        return EXIT_OK
    teams = {team["id"]: team["name"] for team in client.get("teams/")}
    rows = [{**project, "team_name": f"{teams.get(project['team'], '?')} ({project['team']})"} for project in projects]
    print_table(rows, [("id", "id"), ("team", "team_name"), ("name", "name")])
    return EXIT_OK


def cmd_datasets_list(args) -> int:
    client = connect(args)
    datasets = client.get(f"projects/{args.project}/datasets/", what=f"Project {args.project}")
    if args.json:
        print_json(datasets)
    else:
        rows = [{**dataset, "class_count": len(dataset["classes"] or [])
                 if dataset.get("labelling") != "unlabelled" else "unlabelled", "holds": holding(dataset)}
                for dataset in datasets]
        print_table(rows, [("id", "id"), ("name", "name"), ("version", "version"), ("state", "state"),
                           ("modality", "modality"), ("holds", "holds"), ("classes", "class_count")])
    return EXIT_OK


def holding(dataset: dict) -> str:
    """"1,200 images" or "1,200 rows": a text dataset holds rows, not images."""
    if dataset.get("modality") == "text":
        return f"{dataset.get('row_count') or 0:,} rows"
    return f"{dataset.get('image_count') or 0:,} images"


def show_dataset(dataset: dict) -> None:
    print_fields([
        ("dataset", f"#{dataset['id']} {dataset['name']} (version {dataset['version']})"),
        ("project", dataset["project"]), ("state", dataset["state"]), ("error", dataset.get("error")),
        ("modality", dataset.get("modality")),
        ("rows", dataset.get("row_count")) if dataset.get("modality") == "text" else ("images", dataset.get("image_count")),
        ("classes", "none: unlabelled, for calibration only" if dataset.get("labelling") == "unlabelled"
         else ", ".join(dataset.get("classes") or [])),
        ("archive", dataset.get("archive_name")), ("sha256", dataset.get("archive_sha256")),
        ("import job", dataset.get("import_job")), ("created", when(dataset.get("created_at"))),
    ])


def cmd_datasets_show(args) -> int:
    dataset = connect(args).get(f"datasets/{args.dataset}/", what=f"Dataset {args.dataset}")
    if args.json:
        print_json(dataset)
    else:
        show_dataset(dataset)
    return EXIT_OK


def cmd_datasets_upload(args) -> int:
    client = connect(args)
    client.get(f"projects/{args.project}/", what=f"Project {args.project}")  # before sending any bytes
    finished = upload_file(client, project=args.project, path=Path(args.file), chunk_size=args.chunk_size)
    columns = {role: getattr(args, f"{role}_column") for role in ("text", "text_pair", "label", "split")}
    body = {"name": args.name, "upload": finished.id, "description": args.description, "val_fraction": args.val_fraction,
            "seed": args.seed, "labelling": args.labelling, "modality": args.modality,
            "columns": {role: name for role, name in columns.items() if name}}
    dataset = create_from_uploads(client, args, [finished], "datasets", body)
    note(f"Dataset #{dataset['id']} “{dataset['name']}” version {dataset['version']} created; "
         f"import job #{dataset['import_job']}.")
    return follow_created(client, args, dataset, dataset["import_job"], f"datasets/{dataset['id']}/", show_dataset)


def cmd_models_list(args) -> int:
    client = connect(args)
    models = client.get(f"projects/{args.project}/models/", what=f"Project {args.project}")
    if args.json:
        print_json(models)
        return EXIT_OK
    rows = [{**model, "count": len(model["artifacts"]), "classes": len(model["labels"]) or "",
             "updated": when(model["updated_at"])} for model in models]
    print_table(rows, [("id", "id"), ("name", "name"), ("artifacts", "count"), ("classes", "classes"),
                       ("updated", "updated")])
    return EXIT_OK


def artifact_rows(artifacts: list[dict]) -> list[dict]:
    return [{**a, "size": human_bytes(a["size_bytes"]) if a.get("size_bytes") else ""} for a in artifacts]


def cmd_models_show(args) -> int:
    model = connect(args).get(f"models/{args.model}/", what=f"Model {args.model}")
    if args.json:
        print_json(model)
        return EXIT_OK
    show_model_settings(model)
    print()
    print_table(artifact_rows(model["artifacts"]), [
        ("artifact", "id"), ("state", "state"), ("origin", "origin"), ("format", "format"), ("precision", "precision"),
        ("parent", "parent"), ("size", "size"), ("job", "job")])
    return EXIT_OK


PREPROCESSING_OPTIONS = ("fit", "crop", "resize", "value_range", "color", "layout")


def cmd_models_set(args) -> int:
    """Change a model's labels and preprocessing settings; those not given stay as they are."""
    preprocessing = {name: getattr(args, name) for name in PREPROCESSING_OPTIONS if getattr(args, name) is not None}
    if args.input_size is not None:
        height, _, width = args.input_size.lower().partition("x")
        preprocessing["input_size"] = [height, width or height]
    for name in ("mean", "std"):
        if getattr(args, name) is not None:
            preprocessing[name] = [v for v in getattr(args, name).replace(",", " ").split()]
    body = {"preprocessing": preprocessing} if preprocessing else {}
    if args.labels is not None:
        body["labels"] = [label.strip() for label in args.labels.split(",") if label.strip()]
    if not body:
        raise UsageError("Say what to change: --labels or a preprocessing option (see --help).")
    model = connect(args).patch(f"models/{args.model}/", body, what=f"Model {args.model}")
    if args.json:
        print_json(model)
    else:
        show_model_settings(model)
    return EXIT_OK


def show_model_settings(model: dict) -> None:
    pre = model["preprocessing"]
    print_fields([("model", f"#{model['id']} {model['name']}"), ("labels", labels_text(model)),
                  ("scores", f"{model.get('scores') or 'not known'}, output {model.get('output_index', 0)}"),
                  ("input size", "×".join(map(str, pre["input_size"])) + " (h×w)"),
                  ("fit", f"{pre.get('fit', 'crop')}, crop {pre.get('crop', 0.875)}, resize {pre.get('resize', 'bilinear')}"),
                  ("values", f"{pre.get('value_range', '0-1')}, mean {pre['mean']}, std {pre['std']}"),
                  ("network", f"{pre['color']}, {pre['layout']}")])


def labels_text(model: dict) -> str:
    text = ", ".join(model["labels"])
    if model["labels"] and not model.get("labels_confirmed", True):
        text += f"  (read from {model.get('labels_source') or 'the model'}; not confirmed: vintner models labels {model['id']} --confirm)"
    return text


def cmd_models_labels(args) -> int:
    """Confirm the labels read from a model's file, or set them; and what its scores output gives."""
    body: dict = {}
    if args.set is not None:
        body["labels"] = [label.strip() for label in args.set.split(",") if label.strip()]
    elif args.confirm:
        body["labels_confirmed"] = True
    if args.scores:
        body["scores"] = args.scores
    if args.output is not None:
        body["output_index"] = args.output
    client = connect(args)
    if body:
        model = client.patch(f"models/{args.model}/", body, what=f"Model {args.model}")
    else:
        model = client.get(f"models/{args.model}/", what=f"Model {args.model}")
    if args.json:
        print_json(model)
        return EXIT_OK
    print_fields([("model", f"#{model['id']} {model['name']}"), ("labels", labels_text(model)),
                  ("scores", f"{model.get('scores') or 'not known'}, output {model.get('output_index', 0)}")])
    return EXIT_OK


def cmd_models_upload(args) -> int:
    client = connect(args)
    client.get(f"projects/{args.project}/", what=f"Project {args.project}")
    if len(args.files) > 2:
        raise UsageError("Upload one file, a zip, or an IR's .xml and .bin.")
    finished = [upload_file(client, project=args.project, path=Path(file), chunk_size=args.chunk_size)
                for file in args.files]
    body = {"name": args.name, "uploads": [upload.id for upload in finished], "format": args.format,
            "architecture": args.architecture, "num_classes": args.num_classes,
            "labels": [label.strip() for label in args.labels.split(",")] if args.labels else []}
    artifact = create_from_uploads(client, args, finished, "models", body)
    note(f"Artifact #{artifact['id']} of model #{artifact['model']} “{args.name}” created; "
         f"inspection job #{artifact['job']}.")
    return follow_created(client, args, artifact, artifact["job"], f"artifacts/{artifact['id']}/", show_artifact)


def cmd_models_compare(args) -> int:
    client = connect(args)
    query = {key: value for key, value in (("dataset", args.dataset), ("split", args.split), ("max_drop", args.max_drop),
                                                            ("metric", args.metric))
             if value is not None}
    comparison = client.get(f"models/{args.model}/compare/", what=f"Model {args.model}", **query)
    if args.json:
        print_json(comparison)
        return EXIT_OK
    rows = []
    for row in comparison["rows"]:
        best = [goal for goal, flag in (("latency", row["best_latency"]), ("throughput", row["best_throughput"])) if flag]
        rows.append({
            **row, "size": human_bytes(row["size_bytes"]) if row.get("size_bytes") else "",
            "top1_text": f"{row['top1']:.2%}" if row.get("top1") is not None else "",
            "latency": f"{row['latency_ms']:.2f}" if row.get("latency_ms") else "",
            "fps_text": f"{row['fps']:.1f}" if row.get("fps") else "", "best": ", ".join(best),
        })
    print_table(rows, [("artifact", "artifact"), ("format", "format"), ("precision", "precision"), ("size", "size"),
                       ("top-1", "top1_text"), ("latency ms", "latency"), ("fps", "fps_text"), ("best for", "best")])
    if len(comparison.get("hosts") or []) > 1:
        note(f"Figures come from several CPUs ({', '.join(comparison['hosts'])}): compare with care.")
    return EXIT_OK


def show_artifact(artifact: dict) -> None:
    print_fields([
        ("artifact", f"#{artifact['id']} of model #{artifact['model']}"), ("state", artifact["state"]),
        ("error", artifact.get("error")), ("origin", artifact["origin"]), ("format", artifact.get("format")),
        ("precision", artifact.get("precision")), ("parent", artifact.get("parent")), ("job", artifact.get("job")),
        ("files", ", ".join(f"{f['name']} ({human_bytes(f['size'])})" for f in artifact.get("files") or [])),
        ("sha256", artifact.get("sha256")), ("created", when(artifact.get("created_at"))),
    ])


def cmd_artifacts_show(args) -> int:
    artifact = connect(args).get(f"artifacts/{args.artifact}/", what=f"Artifact {args.artifact}")
    if args.json:
        print_json(artifact)
    else:
        show_artifact(artifact)
    return EXIT_OK


def cmd_artifacts_download(args) -> int:
    client = connect(args)
    artifact = client.get(f"artifacts/{args.artifact}/", what=f"Artifact {args.artifact}")
    if artifact["state"] != "ready":
        raise ApiError(f"Artifact #{artifact['id']} is {artifact['state']}, not ready to download.")
    response, chunks = client.stream(f"artifacts/{artifact['id']}/download/")
    name = attachment_name(response.headers.get("Content-Disposition", "")) or f"artifact-{artifact['id']}"
    target = Path(args.output) if args.output else Path.cwd() / name
    if target.is_dir():
        target = target / name
    if target.exists() and not args.force:
        response.close()
        raise UsageError(f"{target} exists; give another -o or --force to replace it.")
    total = int(response.headers.get("Content-Length") or 0)
    part = target.with_name(f".{target.name}.part")
    hasher = hashlib.sha256()
    try:
        with open(part, "wb") as out, Transfer(f"download {name}", total) as bar:
            for chunk in chunks:
                out.write(chunk)
                hasher.update(chunk)
                bar.update(bar.done + len(chunk))
    except requests.RequestException as error:
        part.unlink(missing_ok=True)
        raise ApiError(f"The download was interrupted ({error}); run the command again.") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = hasher.hexdigest()
    if len(artifact["files"]) == 1 and artifact.get("sha256") and digest != artifact["sha256"]:
        part.unlink()
        raise ApiError(f"The download arrived damaged: SHA-256 {digest}, the artifact's is {artifact['sha256']}.")
    os.replace(part, target)
    note(f"Saved {human_bytes(bar.done)} to {target}" + (" (SHA-256 verified)." if len(artifact["files"]) == 1 else
                                                        " (a zip: `sha256sum -c SHA256SUMS` inside checks its files)."))
    if args.json:
        print_json({"path": str(target), "sha256": digest, "size": bar.done})
    else:
        print(target)
    return EXIT_OK


# --- jobs -------------------------------------------------------------------------------------


def cmd_jobs_submit(args) -> int:
    client = connect(args)
    params = params_from(args)
    if args.dataset is not None:
        params["dataset"] = args.dataset
    if args.kind in ARTIFACT_KINDS:
        if args.artifact is None:
            raise UsageError(f"A {args.kind} job is asked of an artifact: give --artifact ID.")
        job = client.post(f"artifacts/{args.artifact}/{args.kind}/", params, what=f"Artifact {args.artifact}")
    elif args.project is None:
        raise UsageError(f"A {args.kind} job runs in a project: give --project ID.")
    elif args.kind == "train":
        job = client.post(f"projects/{args.project}/train/", params, what=f"Project {args.project}")
    else:
        if args.artifact is not None:
            raise UsageError(f"--artifact is for {', '.join(ARTIFACT_KINDS)} jobs.")
        job = client.post(f"projects/{args.project}/jobs/", {"kind": args.kind, "params": params},
                          what=f"Project {args.project}")
    return submitted(client, job, args)


def cmd_jobs_follow(args) -> int:
    client = connect(args)
    code, job = follow_job(client, args.job, args)
    if args.json:
        print_json(job)
    return code


def cmd_jobs_show(args) -> int:
    job = connect(args).get(f"jobs/{args.job}/", what=f"Job {args.job}")
    if args.json:
        print_json(job)
        return EXIT_OK
    print_fields([
        ("job", f"#{job['id']} {job['kind']} in project {job['project']}"), ("state", job["state"]),
        ("progress", f"{job['progress']:.0%}"), ("stage", job.get("stage")), ("queue", job.get("queue")),
        ("worker", job.get("worker_host")), ("attempts", job.get("attempts")), ("created", when(job.get("created_at"))),
        ("started", when(job.get("started_at"))), ("finished", when(job.get("finished_at"))), ("error", job.get("error")),
        ("params", json.dumps(job.get("params"))),
    ])
    pairs = flatten(job.get("result") or {})
    if pairs:
        print("result:")
        print_fields((f"  {name}", value) for name, value in pairs)
    return EXIT_OK


def cmd_jobs_list(args) -> int:
    jobs = connect(args).get(f"projects/{args.project}/jobs/", what=f"Project {args.project}")[: args.limit]
    if args.json:
        print_json(jobs)
        return EXIT_OK
    rows = [{**job, "percent": f"{job['progress']:.0%}", "created": when(job["created_at"])} for job in jobs]
    print_table(rows, [("id", "id"), ("kind", "kind"), ("state", "state"), ("progress", "percent"), ("stage", "stage"),
                       ("created", "created")])
    return EXIT_OK


def cmd_jobs_cancel(args) -> int:
    job = connect(args).post(f"jobs/{args.job}/cancel/", what=f"Job {args.job}")
    if args.json:
        print_json(job)
    else:
        print(f"Job #{job['id']} {job['kind']}: {job['state']}" +
              (" (cancel requested; it stops within seconds)" if job["state"] == "running" else "."))
    return EXIT_OK


# --- the parser -------------------------------------------------------------------------------


def chunk_size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    # Options every command takes, after the command too (`vintner jobs show 3 --url …`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help="server address (default: $VINTNER_URL, else the one logged in to)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")
    following = argparse.ArgumentParser(add_help=False)
    following.add_argument("--no-follow", action="store_true", help="return once the job is submitted")
    uploading = argparse.ArgumentParser(add_help=False)
    uploading.add_argument("--chunk-size", type=chunk_size, default=DEFAULT_CHUNK, metavar="SIZE",
                           help="bytes per request, e.g. 8M (default 32M; the server takes up to 64M)")

    parser = argparse.ArgumentParser(prog="vintner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vintner {__version__}")
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    nouns = parser.add_subparsers(title="commands", metavar="<command>")

    def command(subparsers, name: str, handler, help: str, parents=()) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, help=help, description=help, parents=[common, *parents])
        sub.set_defaults(handler=handler, json=False)
        return sub

    def noun(name: str, help: str):
        sub = nouns.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=None, usage=sub)
        return sub.add_subparsers(title="commands", metavar="<command>")

    login = command(nouns, "login", cmd_login, "get an API token and keep it in ~/.config/vintner/config.json")
    login.add_argument("--username", "-u")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    command(nouns, "logout", cmd_logout, "revoke the stored token on its server and forget it")
    command(nouns, "whoami", cmd_whoami, "who the stored token signs in as, and their teams", [as_json])

    projects = noun("projects", "projects you can see")
    listing = command(projects, "list", cmd_projects_list, "list projects", [as_json])
    listing.add_argument("--team", type=int, help="only this team's")

    datasets = noun("datasets", "datasets: upload, list, show")
    listing = command(datasets, "list", cmd_datasets_list, "a project's datasets", [as_json])
    listing.add_argument("project", type=int)
    show = command(datasets, "show", cmd_datasets_show, "one dataset", [as_json])
    show.add_argument("dataset", type=int)
    upload = command(datasets, "upload", cmd_datasets_upload,
                     "upload an archive or row file (resumable) and import it as a dataset",
                     [as_json, following, uploading])
    upload.add_argument("project", type=int, help="project id")
    upload.add_argument("file", help="zip or tar(.gz/.bz2/.xz) of images; or text rows: .csv, .tsv, .jsonl, or a zip "
                                     "of one such file or of train/val/test files")
    upload.add_argument("--modality", choices=("auto", "images", "text"), default="auto",
                        help="auto (default): a .csv/.tsv/.jsonl/.json file or a zip of them only is text, else images")
    for role in ("text", "text_pair", "label", "split"):
        upload.add_argument(f"--{role.replace('_', '-')}-column", default="", metavar="NAME",
                            help=f"text only: the column holding {role} (default: {role})")
    upload.add_argument("--name", required=True, help="dataset name (an existing name makes a new version)")
    upload.add_argument("--description", default="")
    upload.add_argument("--val-fraction", type=float, default=0.2,
                        help="validation split when the archive has none (default 0.2)")
    upload.add_argument("--seed", type=int, default=0, help="seed of that split")
    upload.add_argument("--labelling", choices=("auto", "labelled", "unlabelled"), default="auto",
                        help="auto (default): class folders make a labelled dataset, loose images an unlabelled one; "
                             "unlabelled: every image, its folders not classes (for calibration only)")

    models = noun("models", "models: upload, list, show, set, compare")
    listing = command(models, "list", cmd_models_list, "a project's models", [as_json])
    listing.add_argument("project", type=int)
    show = command(models, "show", cmd_models_show, "one model and its artifacts", [as_json])
    show.add_argument("model", type=int)
    upload = command(models, "upload", cmd_models_upload,
                     "upload model files (resumable) as a new artifact, inspected on a worker",
                     [as_json, following, uploading])
    upload.add_argument("project", type=int, help="project id")
    upload.add_argument("files", nargs="+", metavar="FILE", help="one file, a zip, or an IR's .xml and .bin")
    upload.add_argument("--name", required=True, help="model name (an existing name gets another artifact)")
    upload.add_argument("--format", default="", help="declared format (default: detected from the content)")
    upload.add_argument("--architecture", default="", help="for a state_dict: its torchvision architecture, e.g. resnet18")
    upload.add_argument("--num-classes", type=int, help="for a state_dict: its class count")
    upload.add_argument("--labels", help="class names, comma-separated")
    settings = command(models, "set", cmd_models_set,
                       "change a model's labels and preprocessing (settings not given stay as they are)", [as_json])
    settings.add_argument("model", type=int)
    settings.add_argument("--labels", help="class names in output order, comma-separated")
    settings.add_argument("--input-size", metavar="HxW", help="the size the network sees, e.g. 224 or 299x299")
    settings.add_argument("--fit", help="crop: resize the short side to size/crop, cut out the centre (torchvision); "
                                        "stretch: cut out the centre crop share, resize to the size")
    settings.add_argument("--crop", help="the share of the image kept, 0.25-1 (0.875: 224 of 256; 1: no crop)")
    settings.add_argument("--resize", help="bilinear, bicubic or nearest")
    settings.add_argument("--value-range", dest="value_range", help="0-1 (pixels / 255 first) or 0-255")
    settings.add_argument("--mean", help="one number or three, comma-separated, in the value range's units")
    settings.add_argument("--std", help="one number or three, comma-separated, in the value range's units")
    settings.add_argument("--color", help="the network's channel order: RGB or BGR")
    settings.add_argument("--layout", help="the network's input layout: NCHW or NHWC")
    labels = command(models, "labels", cmd_models_labels,
                     "show, confirm or set a model's class labels (and what its scores output gives)", [as_json])
    labels.add_argument("model", type=int)
    labels.add_argument("--confirm", action="store_true", help="confirm the labels read from the model's file")
    labels.add_argument("--set", metavar="NAMES", help="class names in output order, comma-separated (confirms them)")
    labels.add_argument("--scores", choices=["logits", "probabilities"], help="what the scores output gives")
    labels.add_argument("--output", type=int, metavar="N", help="the output that holds the class scores (0: the first)")
    compare = command(models, "compare", cmd_models_compare, "a model's artifacts side by side", [as_json])
    compare.add_argument("model", type=int)
    compare.add_argument("--dataset", type=int, help="top-1 from evaluations on this dataset")
    compare.add_argument("--split", choices=["val", "test", "train"])
    compare.add_argument("--max-drop", type=float, help="top-1 points a candidate may lose (default 1)")
    compare.add_argument("--metric", choices=["accuracy", "macro_f1"], help="what the drop is measured in (text models: "
                                                                            "macro_f1 too; default accuracy)")

    artifacts = noun("artifacts", "artifacts: show, download")
    show = command(artifacts, "show", cmd_artifacts_show, "one artifact", [as_json])
    show.add_argument("artifact", type=int)
    download = command(artifacts, "download", cmd_artifacts_download, "download an artifact (several files: a zip)",
                       [as_json])
    download.add_argument("artifact", type=int)
    download.add_argument("-o", "--output", help="file or folder (default: the server's file name, here)")
    download.add_argument("--force", action="store_true", help="replace an existing file")

    jobs = noun("jobs", "jobs: submit, follow, show, list, cancel")
    submit = command(jobs, "submit", cmd_jobs_submit, "submit a job of any kind and follow it", [as_json, following])
    submit.epilog = SUBMIT_EXAMPLES
    submit.formatter_class = argparse.RawDescriptionHelpFormatter
    submit.add_argument("kind", metavar="KIND", help=f"probe, train, {', '.join(ARTIFACT_KINDS)}")
    submit.add_argument("--project", type=int, help="for probe and train")
    submit.add_argument("--artifact", type=int, help=f"for {', '.join(ARTIFACT_KINDS)}")
    submit.add_argument("--dataset", type=int, help="the dataset parameter (train, quantize, evaluate, convert)")
    submit.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter; VALUE is read as JSON when it is (3, 0.5, true, [1,2]), else as text")
    submit.add_argument("--params-json", metavar="JSON", help="parameters as one JSON object (-p wins)")
    follow_cmd = command(jobs, "follow", cmd_jobs_follow, "show a job's logs and progress live until it ends", [as_json])
    follow_cmd.add_argument("job", type=int)
    show = command(jobs, "show", cmd_jobs_show, "a job's state, progress, result or error", [as_json])
    show.add_argument("job", type=int)
    listing = command(jobs, "list", cmd_jobs_list, "a project's latest jobs", [as_json])
    listing.add_argument("project", type=int)
    listing.add_argument("--limit", type=int, default=20)
    cancel = command(jobs, "cancel", cmd_jobs_cancel, "cancel a job", [as_json])
    cancel.add_argument("job", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        (getattr(args, "usage", None) or parser).print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return args.handler(args)
    except (ApiError, ConfigError, UsageError) as error:
        print(f"vintner: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nvintner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `vintner … | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
