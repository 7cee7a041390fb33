"""The jobs a project's lifecycle is made of, as the generic job engine (queue_jobs)
runs them: their types and labels, and the start-up chain."""

from __future__ import annotations

from django.db import models


class JobType(models.TextChoices):
    RUNTIME_UP = "runtime.up", "Start the project's server"
    WAIT_HEALTHY = "opencode.wait_healthy", "Wait for OpenCode"
    SET_CREDENTIALS = "opencode.set_provider_credentials", "Give it your provider credential"
    SESSION_CREATE = "opencode.session_create", "Open a session"
    SEND_INITIAL_PROMPT = "opencode.send_initial_prompt", "Send your prompt"
    # Work on a running project, outside the start-up chain.
    REINJECT_CREDENTIALS = "opencode.reinject_credentials", "Update the provider credential"
    REMOVE_CREDENTIALS = "opencode.remove_credentials", "Remove a provider credential"
    REBUILD_WHEN_IDLE = "opencode.rebuild_when_idle", "Apply the change once the agent is idle"
    FOLLOW_OAUTH_TOKENS = "opencode.follow_oauth_tokens", "Take the refreshed sign-in tokens"
    RUNTIME_DOWN = "runtime.down", "Stop the project's server"
    PROJECT_DELETE = "project.delete", "Delete the project"


#: The start-up chain, in order.
START_PIPELINE = [
    JobType.RUNTIME_UP,
    JobType.WAIT_HEALTHY,
    JobType.SET_CREDENTIALS,
    JobType.SESSION_CREATE,
    JobType.SEND_INITIAL_PROMPT,
]

#: Credentials get 3 attempts; other steps a few more, since a server that is still
#: starting answers "connection refused" for a while.
CREDENTIAL_ATTEMPTS = 3
