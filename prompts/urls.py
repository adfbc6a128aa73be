from django.urls import path

from . import apis

urlpatterns = [
    path("prompts", apis.PromptListCreateApi.as_view(), name="prompts"),
    path("prompts/<int:prompt_id>", apis.PromptDetailApi.as_view(), name="prompt-detail"),
]
