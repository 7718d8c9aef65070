"""The tus 1.0 endpoint (core, creation, termination, expiration): resumable uploads for the
browser (tus-js-client), the CLI and scripts (any tus client). https://tus.io/protocols/resumable-upload

POST /api/v1/uploads/ with Upload-Length and Upload-Metadata (`filename`, `project`, optional
`sha256` of the whole file) creates an upload; HEAD tells its offset; PATCH appends a chunk at
that offset; DELETE abandons it. Errors carry {"detail": "..."} like the rest of the API.
"""

import base64
import binascii
import io

from django.conf import settings
from django.http import Http404
from django.urls import reverse
from django.utils.http import http_date
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.access import Action, authorize
from webapp.core.throttles import CreateRateThrottle
from webapp.projects.selectors import project_for_user
from webapp.uploads import services
from webapp.uploads.models import Upload

TUS_VERSION = "1.0.0"
TUS_HEADERS = {"Tus-Resumable": TUS_VERSION}


def _tus(status: int, headers: dict | None = None, detail: str | None = None) -> Response:
    response = Response({"detail": detail} if detail else None, status=status)
    for name, value in {**TUS_HEADERS, **(headers or {})}.items():
        response[name] = str(value)
    return response


def _metadata(header: str) -> dict[str, str]:
    """`key base64value,key2 base64value2` → dict; a value may be absent."""
    pairs = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = item.partition(" ")
        try:
            pairs[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise services.UploadError(f"Upload-Metadata value for “{key}” is not valid base64 UTF-8.") from None
    return pairs


def _int_header(request: Request, name: str) -> int:
    try:
        value = int(request.headers.get(name, ""))
    except ValueError:
        raise services.UploadError(f"The {name} header must be a whole number of bytes.") from None
    if value < 0:
        raise services.UploadError(f"The {name} header must not be negative.")
    return value


class UploadSerializer(serializers.ModelSerializer):
    class Meta:
        model = Upload
        fields = ["id", "filename", "length", "offset", "sha256", "created_at", "completed_at", "expires_at"]


class TusView(APIView):
    """Every answer carries Tus-Resumable; every request but OPTIONS must send it."""

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if request.method not in ("OPTIONS", "GET") and request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise services.UploadError(f"Send the header Tus-Resumable: {TUS_VERSION}.", 412)

    def handle_exception(self, exc):
        if isinstance(exc, services.UploadError):
            return _tus(exc.status, {"Tus-Version": TUS_VERSION} if exc.status == 412 else None, str(exc))
        response = super().handle_exception(exc)
        response["Tus-Resumable"] = TUS_VERSION
        return response


class UploadListView(TusView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "uploads"

    @extend_schema(request=None, responses={204: None})
    def options(self, request: Request) -> Response:
        return _tus(
            204,
            {
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": "creation,termination,expiration",
                "Tus-Max-Size": settings.UPLOAD_MAX_BYTES,
            },
        )

    @extend_schema(request=None, responses={201: None}, summary="Create a resumable (tus) upload")
    def post(self, request: Request) -> Response:
        length = _int_header(request, "Upload-Length")
        metadata = _metadata(request.headers.get("Upload-Metadata", ""))
        filename = metadata.get("filename") or metadata.get("name") or ""
        if not filename:
            raise services.UploadError("Upload-Metadata must name the file (filename).")
        try:
            project_id = int(metadata.get("project", ""))
        except ValueError:
            raise services.UploadError("Upload-Metadata must name the project (project: its id).") from None
        project = project_for_user(request.user, project_id, Action.WRITE)
        upload = services.upload_create(
            team=project.team, user=request.user, filename=filename, length=length, metadata=metadata
        )
        location = request.build_absolute_uri(reverse("api_upload_detail", args=[upload.id]))
        return _tus(201, {"Location": location, "Upload-Offset": 0, "Upload-Expires": http_date(upload.expires_at.timestamp())})


class UploadDetailView(TusView):
    def _upload(self, request: Request, upload_id) -> Upload:
        upload = Upload.objects.filter(id=upload_id, created_by=request.user).select_related("team").first()
        if upload is None:
            raise Http404
        authorize(request.user, upload.team_id, Action.WRITE)
        return upload

    @extend_schema(responses={200: UploadSerializer}, summary="Where a resumable upload stands")
    def get(self, request: Request, upload_id) -> Response:
        return Response(UploadSerializer(self._upload(request, upload_id)).data)

    def head(self, request: Request, upload_id) -> Response:
        upload = self._upload(request, upload_id)
        return _tus(
            200,
            {
                "Upload-Offset": upload.offset,
                "Upload-Length": upload.length,
                "Upload-Expires": http_date(upload.expires_at.timestamp()),
                "Cache-Control": "no-store",
            },
        )

    @extend_schema(request=None, responses={204: None}, summary="Append a chunk (tus PATCH)")
    def patch(self, request: Request, upload_id) -> Response:
        upload = self._upload(request, upload_id)
        if request.content_type != "application/offset+octet-stream":
            raise services.UploadError("Send chunks as Content-Type: application/offset+octet-stream.", 415)
        upload = services.upload_append(
            upload=upload,
            offset=_int_header(request, "Upload-Offset"),
            body=request.stream or io.BytesIO(),
            length=_int_header(request, "Content-Length"),
        )
        return _tus(204, {"Upload-Offset": upload.offset, "Upload-Expires": http_date(upload.expires_at.timestamp())})

    @extend_schema(responses={204: None}, summary="Abandon an upload (tus termination)")
    def delete(self, request: Request, upload_id) -> Response:
        upload = self._upload(request, upload_id)
        if upload.claimed:
            raise services.UploadError("A dataset or model uses this upload; delete that instead.", 409)
        services.upload_delete(upload=upload)
        return _tus(204)
