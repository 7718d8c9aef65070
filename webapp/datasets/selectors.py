from django.core.exceptions import ValidationError
from django.db.models import Max, QuerySet

from webapp.access import Action, get_for_user
from webapp.core.numbers import whole_number
from webapp.datasets.models import Dataset, DatasetItem, Labelling
from webapp.jobs.models import ACTIVE_STATES, Job, JobState


def dataset_for_user(user, dataset_id: int, action: Action) -> Dataset:
    datasets = Dataset.objects.select_related("project__team", "import_job", "created_by")
    return get_for_user(user, datasets, dataset_id, action, team_lookup="project__team")


def chosen_dataset(user, params: dict, *, missing: str = "Choose a dataset.") -> Dataset:
    """The dataset a job's parameters name, if the user may see it (another team's: 404); a field
    error when none is named."""
    chosen = whole_number(params.get("dataset"), low=1)
    if chosen is None:
        raise ValidationError({"params.dataset": missing})
    return dataset_for_user(user, chosen, Action.VIEW)


def datasets_of_project(project_id: int) -> QuerySet[Dataset]:
    return Dataset.objects.filter(project_id=project_id).select_related("import_job", "created_by")


def dataset_rows_of_project(project_id: int) -> QuerySet[Dataset]:
    """The project page's dataset list: the row's columns (not the report) and the import's state."""
    return Dataset.objects.filter(project_id=project_id).select_related("import_job").only(
        "id", "name", "version", "archive_name", "modality", "image_count", "classes", "labelling", "imported_at",
        "import_job_id", "import_job__id", "import_job__state", "import_job__progress")


def ready_datasets_of_project(project_id: int, *, labelled_only: bool = False) -> QuerySet[Dataset]:
    """Imported datasets; `labelled_only` for the jobs that score or train (all but calibration)."""
    datasets = datasets_of_project(project_id).filter(imported_at__isnull=False)
    return datasets.exclude(labelling=Labelling.UNLABELLED) if labelled_only else datasets


def next_version(project_id: int, name: str) -> int:
    latest = Dataset.objects.filter(project_id=project_id, name=name).aggregate(latest=Max("version"))["latest"]
    return (latest or 0) + 1


def items_of_dataset(dataset: Dataset, *, label: str = "", split: str = "") -> QuerySet[DatasetItem]:
    items = dataset.items.all()
    if label:
        items = items.filter(label=label)
    if split:
        items = items.filter(split=split)
    return items.order_by("index")


def active_jobs_using(dataset: Dataset) -> list[Job]:
    """Jobs not yet finished that read this dataset, in whichever project of the team they run
    (not only the dataset's own), its import included."""
    return list(Job.objects.filter(reads__dataset=dataset, state__in=ACTIVE_STATES).distinct())


def token_lengths_of(dataset: Dataset, *, latest: int = 3) -> list[dict]:
    """What the latest finished jobs that tokenized this dataset reported of its token lengths
    (workers/pipeline/text/lengths.py): [{"job", "lengths"}], newest first."""
    jobs = Job.objects.filter(reads__dataset=dataset, state=JobState.SUCCEEDED, result__has_key="token_lengths")
    return [{"job": job, "lengths": job.result["token_lengths"]}
            for job in jobs.order_by("-id").distinct()[:latest] if isinstance(job.result.get("token_lengths"), dict)]
