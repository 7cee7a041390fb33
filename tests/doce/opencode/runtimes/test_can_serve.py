"""Whether a server started for one spec may serve another (a warm pool's neutral server
claimed by a project, projects.pool): what it can reach was fixed when it started."""

from __future__ import annotations

from dataclasses import replace

from doce.opencode.runtimes import CustomProvider, LocalRuntime
from doce.opencode.runtimes.docker import DockerComposeRuntime


def test_the_sandbox_serves_only_endpoints_it_was_started_to_reach(make_spec, settings):
    settings.DOCE_SANDBOX = "on"
    settings.DOCE_SANDBOX_ALLOW = []
    neutral = make_spec("pool-a", custom_providers=())
    loopback = make_spec(1)  # its endpoint is on the host's 127.0.0.1:9
    internet = make_spec(
        2, custom_providers=(CustomProvider("x", "X", "https://93.184.215.14/v1", ["m"]),)
    )
    runtime = LocalRuntime()

    assert not runtime.can_serve(neutral, loopback)
    assert runtime.can_serve(neutral, internet)  # a public address needs no opening
    settings.DOCE_SANDBOX_ALLOW = ["127.0.0.1:9"]  # opened to every server
    assert runtime.can_serve(neutral, loopback)
    settings.DOCE_SANDBOX = "off"
    settings.DOCE_SANDBOX_ALLOW = []
    assert runtime.can_serve(neutral, loopback)


def test_docker_maps_the_host_only_for_a_spec_that_names_it(make_spec):
    neutral = make_spec("pool-a", custom_providers=())
    on_host = make_spec(
        1,
        custom_providers=(
            CustomProvider("o", "Ollama", "http://host.docker.internal:11434/v1", ["m"]),
        ),
    )
    runtime = DockerComposeRuntime()
    assert not runtime.can_serve(neutral, on_host)
    assert runtime.can_serve(on_host, neutral)


def test_a_docker_folder_keeps_its_compose_project(make_spec, fake_docker):
    """A pooled server's folder, taken over by project 7, restarts under the pool's
    compose project: the same home volume (its sessions, its auth.json)."""
    pooled = make_spec("pool-a", custom_providers=())
    runtime = DockerComposeRuntime()
    first = runtime.start(pooled)

    again = runtime.start(replace(make_spec(7), data_dir=pooled.data_dir))

    assert first.compose_project == again.compose_project == "doce_pool-a"
    assert runtime.start(make_spec(8)).compose_project == "doce_8"
