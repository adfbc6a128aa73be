"""The system-prompt library. Content may hold ``{{variables}}`` filled in per request."""

from django.conf import settings
from django.db import models


class Visibility(models.TextChoices):
    PRIVATE = "private", "Private"
    SHARED = "shared", "Shared with everyone"


class SystemPrompt(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="system_prompts")
    name = models.CharField(max_length=100)
    content = models.TextField()
    description = models.CharField(max_length=500, blank=True)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="systemprompt_name_unique_per_owner"),
            models.CheckConstraint(
                condition=models.Q(visibility__in=Visibility.values), name="systemprompt_visibility_valid"
            ),
        ]
        indexes = [models.Index(fields=["visibility"], name="systemprompt_visibility")]

    def __str__(self) -> str:
        return self.name
