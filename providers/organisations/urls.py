from django.urls import path

from providers.organisations import views

app_name = "organisations"
# Mounted under /settings/organisations/.
urlpatterns = [
    path("", views.organisation_list, name="list"),
    path("<int:organisation_id>/token/", views.organisation_token, name="token"),
    path("<int:organisation_id>/disconnect/", views.organisation_disconnect, name="disconnect"),
]
