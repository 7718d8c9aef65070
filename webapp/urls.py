from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.core import token_api, token_views
from webapp.core.throttles import throttled_page
from webapp.core.views import favicon, healthz
from webapp.datasets import api as datasets_api
from webapp.datasets import views as datasets_views
from webapp.hosts import api as hosts_api
from webapp.hosts import views as hosts_views
from webapp.jobs import api as jobs_api
from webapp.jobs import views as jobs_views
from webapp.projects import api as projects_api
from webapp.projects import views as projects_views
from webapp.optimize import api as optimize_api
from webapp.optimize import measure_api, measure_views
from webapp.optimize import views as optimize_views
from webapp.registry import api as registry_api
from webapp.registry import graph_views
from webapp.registry import views as registry_views
from webapp.teams import api as teams_api
from webapp.teams import views as teams_views
from webapp.uploads import api as uploads_api

api_v1 = [
    path("auth/token/", token_api.TokenView.as_view(), name="api_token"),
    path("auth/tokens/", token_api.TokenListView.as_view(), name="api_token_list"),
    path("auth/tokens/<int:token_id>/", token_api.TokenDetailView.as_view(), name="api_token_detail"),
    path("teams/", teams_api.TeamListView.as_view(), name="api_team_list"),
    path("teams/<int:team_id>/", teams_api.TeamDetailView.as_view(), name="api_team_detail"),
    path("teams/<int:team_id>/members/", teams_api.MemberListView.as_view(), name="api_member_list"),
    path(
        "teams/<int:team_id>/members/<int:membership_id>/",
        teams_api.MemberDetailView.as_view(),
        name="api_member_detail",
    ),
    path("projects/", projects_api.ProjectListView.as_view(), name="api_project_list"),
    path("projects/<int:project_id>/", projects_api.ProjectDetailView.as_view(), name="api_project_detail"),
    path("projects/<int:project_id>/jobs/", jobs_api.ProjectJobsView.as_view(), name="api_project_jobs"),
    path("projects/<int:project_id>/datasets/", datasets_api.ProjectDatasetsView.as_view(), name="api_project_datasets"),
    path("datasets/<int:dataset_id>/", datasets_api.DatasetDetailView.as_view(), name="api_dataset_detail"),
    path("datasets/<int:dataset_id>/import/", datasets_api.DatasetImportView.as_view(), name="api_dataset_import"),
    path("datasets/<int:dataset_id>/report/", datasets_api.DatasetReportView.as_view(), name="api_dataset_report"),
    path("datasets/<int:dataset_id>/items/", datasets_api.DatasetItemsView.as_view(), name="api_dataset_items"),
    path("projects/<int:project_id>/models/", registry_api.ProjectModelsView.as_view(), name="api_project_models"),
    path("projects/<int:project_id>/train/", registry_api.ProjectTrainView.as_view(), name="api_project_train"),
    path("models/<int:model_id>/", registry_api.ModelDetailView.as_view(), name="api_model_detail"),
    path("artifacts/<int:artifact_id>/", registry_api.ArtifactDetailView.as_view(), name="api_artifact_detail"),
    path("artifacts/<int:artifact_id>/download/", registry_api.ArtifactDownloadView.as_view(), name="api_artifact_download"),
    path("artifacts/<int:artifact_id>/convert/", optimize_api.ArtifactConvertView.as_view(), name="api_artifact_convert"),
    path("artifacts/<int:artifact_id>/benchmark/", measure_api.ArtifactBenchmarkView.as_view(), name="api_artifact_benchmark"),
    path("artifacts/<int:artifact_id>/evaluate/", measure_api.ArtifactEvaluateView.as_view(), name="api_artifact_evaluate"),
    path("artifacts/<int:artifact_id>/snippet/", measure_api.ArtifactSnippetView.as_view(), name="api_artifact_snippet"),
    path("models/<int:model_id>/compare/", measure_api.ModelCompareView.as_view(), name="api_model_compare"),
    path("artifacts/<int:artifact_id>/quantize/", optimize_api.ArtifactQuantizeView.as_view(), name="api_artifact_quantize"),
    path("jobs/<int:job_id>/", jobs_api.JobDetailView.as_view(), name="api_job_detail"),
    path("jobs/<int:job_id>/events/", jobs_api.JobEventsView.as_view(), name="api_job_events"),
    path("jobs/<int:job_id>/cancel/", jobs_api.JobCancelView.as_view(), name="api_job_cancel"),
    path("uploads/", uploads_api.UploadListView.as_view(), name="api_upload_list"),
    path("uploads/<uuid:upload_id>/", uploads_api.UploadDetailView.as_view(), name="api_upload_detail"),
    path("workers/", hosts_api.WorkerListView.as_view(), name="api_worker_list"),
]

urlpatterns = [
    path("", teams_views.home, name="home"),
    path("accounts/login/", throttled_page("login")(auth_views.LoginView.as_view()), name="login"),
    path("accounts/tokens/", token_views.token_list, name="token_list"),
    path("accounts/tokens/<int:token_id>/revoke/", token_views.token_revoke, name="token_revoke"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("teams/", teams_views.team_list, name="team_list"),
    path("teams/<int:team_id>/", teams_views.team_detail, name="team_detail"),
    path("teams/<int:team_id>/switch/", teams_views.team_switch, name="team_switch"),
    path("teams/<int:team_id>/delete/", teams_views.team_delete, name="team_delete"),
    path("teams/<int:team_id>/members/", teams_views.team_members, name="team_members"),
    path("teams/<int:team_id>/members/<int:membership_id>/role/", teams_views.member_role, name="member_role"),
    path("teams/<int:team_id>/members/<int:membership_id>/remove/", teams_views.member_remove, name="member_remove"),
    path("teams/<int:team_id>/projects/new/", projects_views.project_create, name="project_create"),
    path("projects/<int:project_id>/", projects_views.project_detail, name="project_detail"),
    path("projects/<int:project_id>/edit/", projects_views.project_edit, name="project_edit"),
    path("projects/<int:project_id>/delete/", projects_views.project_delete, name="project_delete"),
    path("projects/<int:project_id>/jobs/<str:kind>/new/", jobs_views.job_submit, name="job_submit"),
    path("projects/<int:project_id>/datasets/new/", datasets_views.dataset_new, name="dataset_new"),
    path("datasets/<int:dataset_id>/", datasets_views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:dataset_id>/gallery/", datasets_views.dataset_gallery, name="dataset_gallery"),
    path("datasets/<int:dataset_id>/thumbs/<int:index>.jpg", datasets_views.dataset_thumb, name="dataset_thumb"),
    path("datasets/<int:dataset_id>/import/", datasets_views.dataset_import, name="dataset_import"),
    path("datasets/<int:dataset_id>/delete/", datasets_views.dataset_delete, name="dataset_delete"),
    path("projects/<int:project_id>/models/new/", registry_views.model_new, name="model_new"),
    path("projects/<int:project_id>/train/", registry_views.model_train, name="model_train"),
    path("models/<int:model_id>/runs/", registry_views.model_runs, name="model_runs"),
    path("models/<int:model_id>/", registry_views.model_detail, name="model_detail"),
    path("models/<int:model_id>/edit/", registry_views.model_edit, name="model_edit"),
    path("models/<int:model_id>/labels/confirm/", registry_views.model_labels_confirm, name="model_labels_confirm"),
    path("models/<int:model_id>/delete/", registry_views.model_delete, name="model_delete"),
    path("artifacts/<int:artifact_id>/", registry_views.artifact_detail, name="artifact_detail"),
    path("artifacts/<int:artifact_id>/download/", registry_views.artifact_download, name="artifact_download"),
    path("artifacts/<int:artifact_id>/delete/", registry_views.artifact_delete, name="artifact_delete"),
    path("artifacts/<int:artifact_id>/convert/", optimize_views.artifact_convert, name="artifact_convert"),
    path("artifacts/<int:artifact_id>/quantize/", optimize_views.artifact_quantize, name="artifact_quantize"),
    path("artifacts/<int:artifact_id>/graph/", graph_views.artifact_graph, name="artifact_graph"),
    path("artifacts/<int:artifact_id>/benchmark/", measure_views.artifact_benchmark, name="artifact_benchmark"),
    path("artifacts/<int:artifact_id>/evaluate/", measure_views.artifact_evaluate, name="artifact_evaluate"),
    path("artifacts/<int:artifact_id>/performance/", measure_views.artifact_performance, name="artifact_performance"),
    path("artifacts/<int:artifact_id>/deploy/", measure_views.artifact_deploy, name="artifact_deploy"),
    path("artifacts/<int:artifact_id>/classify.py", measure_views.artifact_classify, name="artifact_classify"),
    path("models/<int:model_id>/compare/", measure_views.model_compare, name="model_compare"),
    path("jobs/<int:job_id>/", jobs_views.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/row/", jobs_views.job_row, name="job_row"),
    path("jobs/<int:job_id>/cancel/", jobs_views.job_cancel, name="job_cancel"),
    path("jobs/<int:job_id>/log/", jobs_views.job_log, name="job_log"),
    path("workers/", hosts_views.worker_list, name="worker_list"),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api_schema"), name="api_docs"),
]
