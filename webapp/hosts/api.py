from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.hosts.models import WorkerHost


class WorkerHostSerializer(serializers.ModelSerializer):
    online = serializers.BooleanField(source="is_online", read_only=True)

    class Meta:
        model = WorkerHost
        fields = ["hostname", "online", "queues", "capabilities", "started_at", "last_seen", "reported_at"]


class WorkerListView(APIView):
    serializer_class = WorkerHostSerializer

    def get(self, request: Request) -> Response:
        return Response(WorkerHostSerializer(WorkerHost.objects.all(), many=True).data)
