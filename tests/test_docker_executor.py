"""The docker executor against a real Docker engine and the locally built base images."""
from __future__ import annotations

import importlib.util
import os
import socket
import textwrap
import time
import uuid

import pytest

from docker_support import (  # noqa: F401  (fixtures)
    busybox_image,
    containers_of,
    docker_client,
    docker_executor,
    pod,
    python_image,
    wait_until,
)
from localflow.errors import ExecutorError
from localflow.executors.base import ContainerSpec, ImageMapping, Mount, Resources
from localflow.executors.docker import DockerExecutor, find_leftovers, remove_leftovers
from localflow.images import debian_mirror

docker = pytest.mark.docker


def py(name: str, code: str, image: str, tmp_path, **kw) -> ContainerSpec:
    """A container running ``python3 -c code`` with its log under ``tmp_path/logs``."""
    return ContainerSpec(name=name, image=image, argv=["python3", "-c", textwrap.dedent(code)],
                         log_path=str(tmp_path / "logs" / f"{name}.log"), **kw)


@docker
def test_exit_codes_become_completed_and_error(docker_executor, busybox_image, tmp_path):
    spec = pod("codes",
               ContainerSpec("ok", busybox_image, ["sh", "-c", "exit 0"]),
               ContainerSpec("bad", busybox_image, ["sh", "-c", "exit 3"]))
    results = docker_executor.start(spec).wait(60)
    assert [(r.name, r.exit_code, r.reason) for r in results] == [("ok", 0, "Completed"), ("bad", 3, "Error")]
    assert all(r.started_at and r.finished_at and r.finished_at >= r.started_at for r in results)
    wait_until(lambda: containers_of(docker_executor.client, spec) == [], what="the containers to be removed")


@docker
def test_memory_limit_overrun_is_oomkilled_137(docker_executor, python_image, tmp_path):
    hog = py("hog", "b = b'x' * (200 << 20); print(len(b))", python_image, tmp_path,
             resources=Resources(memory_limit=50 << 20, memory_request=50 << 20))
    (result,) = docker_executor.start(pod("oom", hog)).wait(60)
    assert (result.exit_code, result.reason) == (137, "OOMKilled")


@docker
def test_env_workdir_and_bind_mounts_are_the_spec_paths(docker_executor, python_image, tmp_path):
    data, ro = tmp_path / "data", tmp_path / "ro"
    data.mkdir()
    ro.mkdir()
    (ro / "in.txt").write_text("from host")
    c = py("main", """
        import os
        open('/mnt/data/out.txt', 'w').write(os.environ['GREETING'] + ' ' + os.getcwd() + ' '
                                             + open('/mnt/ro/in.txt').read())
        try:
            open('/mnt/ro/x', 'w')
        except OSError as e:
            print('read-only:', e.errno)
        """, python_image, tmp_path, env={"GREETING": "hello"}, working_dir="/var/tmp",
           mounts=[Mount(str(data), "/mnt/data"), Mount(str(ro), "/mnt/ro", read_only=True)])
    (result,) = docker_executor.start(pod("binds", c)).wait(60)
    assert result.reason == "Completed", open(c.log_path).read()
    assert (data / "out.txt").read_text() == "hello /var/tmp from host"
    assert "read-only: 30" in open(c.log_path).read()  # EROFS


@docker
def test_image_mapping_runs_the_mapped_local_tag(docker_executor, python_image, tmp_path):
    c = py("mapped", "import os, sys; print(sys.version_info[:2], os.environ['FROM_MAP'])", "python:3.11-slim",
           tmp_path, mapping=ImageMapping(image="python:3.11-slim", docker_image=python_image, env={"FROM_MAP": "1"}))
    (result,) = docker_executor.start(pod("mapped", c)).wait(60)
    assert result.reason == "Completed"
    assert "(3, 11) 1" in open(c.log_path).read()


@docker
def test_logs_stream_to_the_log_file_while_the_container_runs(docker_executor, python_image, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    c = py("talker", """
        import os, sys, time
        print('first line', flush=True)
        print('to stderr', file=sys.stderr, flush=True)
        while not os.path.exists('/gate/go'):
            time.sleep(0.05)
        print('last line', flush=True)
        """, python_image, tmp_path, mounts=[Mount(str(gate), "/gate")])
    running = docker_executor.start(pod("logs", c))
    wait_until(lambda: os.path.exists(c.log_path) and "to stderr" in open(c.log_path).read(), what="streamed log")
    assert running.wait(0) is None  # still running: the lines arrived before exit
    (gate / "go").write_text("")
    (result,) = running.wait(60)
    assert result.reason == "Completed"
    lines = open(c.log_path).read().splitlines()
    # Docker copies stdout and stderr separately: their relative order is not guaranteed.
    assert sorted(lines) == ["first line", "last line", "to stderr"]
    assert lines.index("first line") < lines.index("last line")


@docker
def test_kill_stops_a_sleeping_container_with_the_given_reason_and_removes_it(docker_executor, busybox_image, docker_client):
    spec = pod("sleeper", ContainerSpec("sleep", busybox_image, ["sleep", "300"]))
    running = docker_executor.start(spec)
    wait_until(lambda: running.pids(), what="a running container")
    t0 = time.monotonic()
    running.kill("DeadlineExceeded", grace_seconds=1)
    (result,) = running.wait(30)
    assert time.monotonic() - t0 < 15
    assert (result.exit_code, result.reason) == (137, "DeadlineExceeded")
    # containers are removed right after their results are reported
    wait_until(lambda: containers_of(docker_client, spec) == [], what="the containers to be removed")


@docker
def test_limits_labels_and_pids_are_applied_to_the_container(docker_executor, busybox_image, docker_client):
    import psutil

    spec = pod("limits", ContainerSpec("main", busybox_image, ["sleep", "300"],
                                       resources=Resources(cpu_request=0.25, cpu_limit=0.5, memory_limit=64 << 20)),
               labels={"app": "x"})
    running = docker_executor.start(spec)
    try:
        pids = wait_until(lambda: running.pids(), what="a running container")
        assert all(psutil.pid_exists(p) for p in pids)
        (container,) = containers_of(docker_client, spec)
        host = container.attrs["HostConfig"]
        assert (host["NanoCpus"], host["Memory"], host["MemorySwap"], host["CpuShares"]) == (
            500_000_000, 64 << 20, 64 << 20, 256)
        assert container.labels["localflow.dev/pod"] == "limits"
        assert container.labels["localflow.dev/run-id"] == spec.labels["localflow.dev/run-id"]
        assert container.labels["app"] == "x"
    finally:
        running.kill(grace_seconds=0)
        running.wait(30)


@docker
def test_missing_image_is_an_executor_error_naming_it_and_the_ways_to_provide_it(docker_executor, docker_client):
    spec = pod("noimage", ContainerSpec("main", "registry.example/nope:1", ["true"]))
    with pytest.raises(ExecutorError) as err:
        docker_executor.start(spec)
    text = str(err.value)
    for needle in ("registry.example/nope:1", "never pulls", "docker load", "docker build",
                   "localflow images build-base", "localflow.yaml"):
        assert needle in text
    # containers are removed right after their results are reported
    wait_until(lambda: containers_of(docker_client, spec) == [], what="the containers to be removed")


@docker
def test_missing_executable_is_container_cannot_run(docker_executor, busybox_image):
    (result,) = docker_executor.start(pod("noexe", ContainerSpec("main", busybox_image, ["no-such-tool", "x"]))).wait(60)
    assert (result.exit_code, result.reason) == (127, "ContainerCannotRun")
    assert "no-such-tool" in result.message


@docker
def test_init_containers_run_to_completion_before_the_main_container(docker_executor, busybox_image, tmp_path):
    shared = tmp_path / "shared"
    init = ContainerSpec("prepare", busybox_image, ["sh", "-c", "echo ready > /s/flag"], mounts=[Mount(str(shared), "/s")])
    main = ContainerSpec("main", busybox_image, ["sh", "-c", "test \"$(cat /s/flag)\" = ready"],
                         mounts=[Mount(str(shared), "/s")])
    assert [r.reason for r in docker_executor.start(pod("init-ok", main, init=(init,))).wait(60)] == ["Completed"]

    failing = ContainerSpec("prepare", busybox_image, ["sh", "-c", "exit 4"])
    results = docker_executor.start(pod("init-fails", main, init=(failing,))).wait(60)
    assert [(r.name, r.exit_code, r.reason) for r in results] == [("prepare", 4, "Error")]


@docker
def test_replicas_on_one_network_reach_each_other_by_hostname(docker_executor, python_image, tmp_path):
    net = f"job-net-{uuid.uuid4().hex[:8]}"  # unique: suites running side by side share one engine
    server = py("server", """
        import socket
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(('', 2222)); s.listen()
        for _ in range(2):  # the worker, then the test through the published port
            conn, _ = s.accept()
            conn.sendall(b'pong from ' + socket.gethostname().encode()); conn.close()
        """, python_image, tmp_path, ports=[2222])
    client = py("client", """
        import socket, time
        deadline = time.time() + 30
        for name in ('job-master-0', 'job-master-0.default.svc', 'job-master-0.job'):
            socket.gethostbyname(name)
        while True:
            try:
                c = socket.create_connection(('job-master-0', 2222), timeout=2); break
            except OSError:
                if time.time() > deadline: raise
                time.sleep(0.1)
        print(c.recv(100).decode())
        """, python_image, tmp_path)
    master_spec = pod("job-master-0", server, hostname="job-master-0", network=net)
    master_spec.subdomain = "job"  # spec.subdomain (JobSet/TrainJob names: <hostname>.<subdomain>)
    master = docker_executor.start(master_spec)
    worker = docker_executor.start(pod("job-worker-0", client, hostname="job-worker-0", network=net))
    (w,) = worker.wait(60)
    assert w.reason == "Completed", open(client.log_path).read()
    assert "pong from job-master-0" in open(client.log_path).read()

    host_port = master.port_map()[2222]
    assert master.address() != "127.0.0.1"

    def host_reply():
        try:
            with socket.create_connection(("127.0.0.1", host_port), timeout=2) as c:
                return c.recv(100).decode()
        except OSError:
            return None
    assert wait_until(host_reply, what="published port") == "pong from job-master-0"
    (m,) = master.wait(60)
    assert m.reason == "Completed"
    docker_executor.close()
    assert docker_executor.client.networks.list(names=[f"localflow-{net}"]) == []


@docker
def test_vanished_container_is_reported_as_error_never_success(docker_executor, busybox_image, docker_client):
    spec = pod("vanish", ContainerSpec("main", busybox_image, ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]))
    running = docker_executor.start(spec)
    (container,) = wait_until(lambda: containers_of(docker_client, spec), what="the container")
    wait_until(lambda: running.pids(), what="a running container")
    container.remove(force=True)  # someone else removes it mid-run
    (result,) = running.wait(30)
    assert result.reason == "Error" and result.exit_code != 0  # the trap would have exited 0 on SIGTERM


@docker
def test_container_gone_before_its_exit_code_is_read_is_error_minus_one(docker_executor, busybox_image, docker_client):
    from localflow.executors.docker import DockerPod

    spec = pod("gone", ContainerSpec("main", busybox_image, ["true"]))
    container = docker_client.containers.create(busybox_image, ["true"])
    container.start()
    container.remove(force=True)  # exited 0 and removed by someone else before localflow looked
    result = DockerPod(docker_executor, spec, None)._collect(spec.containers[0], container)
    assert (result.exit_code, result.reason) == (-1, "Error")
    assert "vanished before its exit code could be read" in result.message


@docker
def test_leftovers_of_a_dead_run_are_found_and_removed_by_labels(docker_client, busybox_image):
    crashed = DockerExecutor(client=docker_client)  # never closed: a localflow that crashed
    net = f"gc-test-{uuid.uuid4().hex[:8]}"  # unique: suites running side by side share one engine
    spec = pod("left", ContainerSpec("main", busybox_image, ["sleep", "300"]), network=net)
    run_id = spec.labels["localflow.dev/run-id"]
    running = crashed.start(spec)
    wait_until(lambda: running.pids(), what="a running container")

    mine = {"localflow.dev/run-id": run_id}  # never touch containers of other tests or runs
    containers, networks = find_leftovers(docker_client, run_ids_alive={run_id}, within=mine)
    assert spec.uid not in [c.labels.get("localflow.dev/pod-uid") for c in containers]
    assert f"localflow-{net}" not in [n.name for n in networks]

    containers, networks = find_leftovers(docker_client, run_ids_alive={"some-other-run"}, within=mine)
    assert spec.uid in [c.labels.get("localflow.dev/pod-uid") for c in containers]
    assert f"localflow-{net}" in [n.name for n in networks]

    gone_containers, gone_networks = remove_leftovers(docker_client, run_ids_alive={"some-other-run"}, within=mine)
    assert f"localflow-{net}" in gone_networks and gone_containers
    # containers are removed right after their results are reported
    wait_until(lambda: containers_of(docker_client, spec) == [], what="the containers to be removed")
    assert docker_client.networks.list(names=[f"localflow-{net}"]) == []
    (result,) = running.wait(30)
    assert result.reason == "Error"


@docker
def test_python_base_image_runs_a_compiled_lightweight_component_with_its_pip_prologue(docker_executor, python_image, tmp_path):
    kfp = pytest.importorskip("kfp")
    import yaml
    from kfp import compiler

    # Written to a file: kfp reads the function's source, and this module's annotations are strings.
    source = tmp_path / "component.py"
    source.write_text(textwrap.dedent(f"""
        from kfp import dsl

        @dsl.component(base_image={python_image!r})
        def double(n: int) -> int:
            return 2 * n

        @dsl.pipeline
        def p(n: int = 21):
            double(n=n)
        """))
    module_spec = importlib.util.spec_from_file_location("lf_docker_component", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(module.p, str(path))
    container = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]["exec-double"]["container"]
    out = tmp_path / "out"
    out.mkdir()
    executor_input = ('{"inputs": {"parameterValues": {"n": 21}}, "outputs": {"parameters": {"Output": '
                      '{"outputFile": "/out/Output"}}, "outputFile": "/out/executor_output.json"}}')
    argv = container["command"] + [a.replace("{{$}}", executor_input) for a in container["args"]]
    c = ContainerSpec("main", python_image, argv, mounts=[Mount(str(out), "/out")], log_path=str(tmp_path / "c.log"))
    (result,) = docker_executor.start(pod("kfp", c)).wait(120)
    assert result.reason == "Completed", open(c.log_path).read()
    assert '"Output": 42' in (out / "executor_output.json").read_text()
    assert f"kfp=={kfp.__version__}" in container["command"][2]  # the pip prologue ran and was satisfied in the image


def test_no_engine_is_an_executor_error_naming_the_address_and_the_fallback(monkeypatch, tmp_path):
    pytest.importorskip("docker")
    address = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", address)
    with pytest.raises(ExecutorError) as err:
        DockerExecutor()
    assert address in str(err.value) and "--executor subprocess" in str(err.value)


def test_debian_mirror_is_read_from_one_line_and_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCALFLOW_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert debian_mirror(str(tmp_path)) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert debian_mirror(str(tmp_path)) == "http://other.example/debian"
    monkeypatch.setenv("LOCALFLOW_DEBIAN_MIRROR", "http://env.example/debian")
    assert debian_mirror(str(tmp_path)) == "http://env.example/debian"
