from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action
from webapp.core.numbers import whole_number
from webapp.core.throttles import CreateRateThrottle
from webapp.jobs import services
from webapp.jobs.events import events_after
from webapp.jobs.kinds import DIRECT_KINDS
from webapp.jobs.models import Job
from webapp.jobs.selectors import inputs_of_job, job_for_user, job_waiting, jobs_of_project
from webapp.projects.selectors import project_for_user


class JobSerializer(serializers.ModelSerializer):
    inputs = serializers.SerializerMethodField(help_text='What it reads: {"datasets": [ids], "artifacts": [ids]}.')
    waiting = serializers.SerializerMethodField(
        help_text='A queued job waiting its turn: {"position": its place in its team\'s line on its queue, "reason": why}; '
                  "null once it was sent to the workers.")

    class Meta:
        model = Job
        fields = [
            "id", "project", "kind", "params", "inputs", "model", "state", "progress", "stage", "queue", "worker_host",
            "attempts", "created_at", "started_at", "finished_at", "cancel_requested_at", "error", "error_detail",
            "result", "last_seq", "waiting",
        ]
        read_only_fields = fields

    def get_inputs(self, job: Job) -> dict[str, list[int]]:
        return inputs_of_job(job)

    def get_waiting(self, job: Job) -> dict | None:
        return job_waiting(job)


class JobSubmitSerializer(serializers.Serializer):
    """What a client may send. What the job reads is not among it: the kinds submitted here read
    nothing (a probe), and those whose params name a dataset or artifact go through their own
    endpoints, whose services check access and record what the job reads. A key it does not
    know is refused by name, never ignored."""

    kind = serializers.ChoiceField(choices=DIRECT_KINDS)
    params = serializers.DictField(required=False, default=dict)
    idempotency_key = serializers.CharField(required=False, max_length=100, help_text="Or the Idempotency-Key header.")

    def to_internal_value(self, data):
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields) - {"csrfmiddlewaretoken"})  # a form's token
            if unknown:
                raise serializers.ValidationError({name: [_unknown(name)] for name in unknown})
        return super().to_internal_value(data)


def _unknown(name: str) -> str:
    if name == "inputs":
        return "A job's inputs are not sent: the server takes them from the parameters."
    return f"Unknown field “{name}”. A job takes kind, params and idempotency_key."


class JobEventSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    kind = serializers.CharField()
    data = serializers.DictField()
    at = serializers.FloatField()


class ProjectJobsView(APIView):
    serializer_class = JobSerializer
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "jobs"

    def get(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.VIEW)
        return Response(JobSerializer(jobs_of_project(project.id)[:200], many=True).data)

    @extend_schema(request=JobSubmitSerializer, responses={201: JobSerializer, 200: JobSerializer},
                   summary="Start a job of a kind that reads nothing (a compute probe)")
    def post(self, request: Request, project_id: int) -> Response:
        project = project_for_user(request.user, project_id, Action.WRITE)
        submit = JobSubmitSerializer(data=request.data)
        submit.is_valid(raise_exception=True)
        data = submit.validated_data
        job, created = services.job_submit(
            project=project,
            user=request.user,
            kind=data["kind"],
            params=data["params"],
            idempotency_key=data.get("idempotency_key") or request.headers.get("Idempotency-Key"),
        )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class JobDetailView(APIView):
    serializer_class = JobSerializer

    def get(self, request: Request, job_id: int) -> Response:
        return Response(JobSerializer(job_for_user(request.user, job_id, Action.VIEW)).data)


class JobEventsView(APIView):
    serializer_class = JobEventSerializer

    def get(self, request: Request, job_id: int) -> Response:
        job = job_for_user(request.user, job_id, Action.VIEW)
        after = whole_number(request.query_params.get("after", "0"))
        if after is None:
            raise ValidationError({"after": "The last event number you have: a whole number, 0 for all."})
        limit = whole_number(request.query_params.get("limit", "1000"))
        if limit is None:
            raise ValidationError({"limit": "How many events at most: a whole number (up to 5000 are sent)."})
        events = [event.as_message() for event in events_after(job.id, after, limit=min(limit, 5000))]
        return Response({"job": JobSerializer(job).data, "events": events})


class JobCancelView(APIView):
    serializer_class = JobSerializer

    def post(self, request: Request, job_id: int) -> Response:
        job = services.job_cancel(job=job_for_user(request.user, job_id, Action.WRITE))
        return Response(JobSerializer(job).data)
