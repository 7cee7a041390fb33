from django.urls import path

from doce.team import views

app_name = "team"
urlpatterns = [
    path("", views.team, name="team"),
    path("invite/", views.invite, name="invite"),
    path("users/", views.add_user, name="add_user"),
    path("users/<int:user_id>/active/", views.user_active, name="user_active"),
    path("users/<int:user_id>/staff/", views.user_staff, name="user_staff"),
    path("users/<int:user_id>/groups/", views.user_groups, name="user_groups"),
    path("groups/", views.group_create, name="group_create"),
    path("invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="revoke"),
    path("invitations/accept/<str:token>/", views.accept, name="accept"),
    path("checklist/dismiss/", views.onboarding_dismiss, name="onboarding_dismiss"),
]
