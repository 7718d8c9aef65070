from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.hosts.selectors import hosts_by_status


@login_required
@require_GET
def worker_list(request: HttpRequest) -> HttpResponse:
    online, offline = hosts_by_status()
    return render(request, "hosts/worker_list.html", {"online": online, "offline": offline})
