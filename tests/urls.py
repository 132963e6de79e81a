from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path


def home(request):
    return HttpResponse("home")


def api_then_fail(request, pk):
    """A view that uses the API (which refreshes the tokens) and then fails: under
    ATOMIC_REQUESTS its transaction rolls back, the new tokens must not."""
    from django_lexoffice.client import LexofficeClient
    from django_lexoffice.models import LexofficeConnection

    with LexofficeClient(LexofficeConnection.objects.get(pk=pk)) as client:
        client.get("/v1/profile")
    raise RuntimeError("the view fails after its API call")


urlpatterns = [
    path("", home, name="home"),
    path("test/api-then-fail/<int:pk>/", api_then_fail),
    path("admin/", admin.site.urls),
    path("lexoffice/", include("django_lexoffice.urls")),
    # The fake Lexware over real HTTP, for live-server and multi-process tests.
    path("fake-lexware/", include("django_lexoffice.testing.urls")),
]
