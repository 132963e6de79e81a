from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path


def home(request):
    return HttpResponse("home")


urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    path("lexoffice/", include("django_lexoffice.urls")),
    # The fake Lexware over real HTTP, for live-server and multi-process tests.
    path("fake-lexware/", include("django_lexoffice.testing.urls")),
]
