#!/usr/bin/env bash
# Make a real Docker engine and localflow's base images available (CI, or a fresh Debian machine).
#
#   bash .ci/docker-setup.sh
#
# 1. installs Debian's docker.io and debootstrap when missing (apt-get);
# 2. starts dockerd in the background unless an engine already answers (log: $DOCKERD_LOG,
#    default /tmp/dockerd.log), trying plain `dockerd` first, then `--storage-driver=vfs`,
#    then also `--iptables=false --ip-masq=false` for sandboxes without netfilter;
# 3. waits (bounded, $DOCKERD_WAIT seconds, default 60) until `docker info` answers;
# 4. builds localflow/debian:bookworm, localflow/python:3.11 and localflow/busybox:latest when
#    missing (python -m localflow.images build-base; idempotent), and, when torch is installed
#    here and LOCALFLOW_TRAINING_IMAGE is not 0, localflow/training-python:latest (this machine's
#    torch, scikit-learn, numpy) for the training scenarios.
# Needs root. Run it after `pip install -e .[test]` so the image gets the host's kfp version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log="${DOCKERD_LOG:-/tmp/dockerd.log}"
wait_s="${DOCKERD_WAIT:-60}"
py="${PYTHON:-python3}"
t0=$(date +%s)

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    echo "docker-setup: installing docker.io debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends docker.io debootstrap ca-certificates
fi
# Debian's client; a different `docker` earlier on PATH is left alone (the SDK talks to the socket).
docker_cli=/usr/bin/docker
[ -x "$docker_cli" ] || docker_cli="$(command -v docker)"

engine_up() { timeout 10 "$docker_cli" info >/dev/null 2>&1; }

wait_engine() {  # $1 = pid of the dockerd we started
    local deadline=$(( $(date +%s) + wait_s ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        engine_up && return 0
        kill -0 "$1" 2>/dev/null || return 1   # dockerd exited: try the next flags
        sleep 0.5
    done
    return 1
}

settle_previous() {  # a dockerd still starting or stopping owns /var/run/docker.pid: wait for it
    local pidfile=/var/run/docker.pid old deadline=$(( $(date +%s) + wait_s ))
    [ -f "$pidfile" ] || return 0
    old="$(cat "$pidfile" 2>/dev/null || true)"
    while [ -n "$old" ] && kill -0 "$old" 2>/dev/null; do
        engine_up && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "docker-setup: dockerd pid $old holds $pidfile but does not answer" >&2; exit 1
        fi
        sleep 0.5
    done
    rm -f "$pidfile"   # stale: its process is gone
}

start_dockerd() {
    settle_previous
    engine_up && return 0
    echo "docker-setup: starting dockerd $*" | tee -a "$log"
    nohup dockerd "$@" >>"$log" 2>&1 &
    local pid=$!
    if wait_engine "$pid"; then
        echo "$pid" > /tmp/dockerd.pid
        echo "docker-setup: dockerd $* answers (pid $pid)"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    [ "$(cat /var/run/docker.pid 2>/dev/null)" = "$pid" ] && rm -f /var/run/docker.pid
    return 1
}

if engine_up; then
    echo "docker-setup: a Docker engine already answers"
else
    if ! command -v iptables >/dev/null; then
        apt-get install -y -q --no-install-recommends iptables || true
    fi
    start_dockerd \
    || start_dockerd --storage-driver=vfs \
    || start_dockerd --storage-driver=vfs --iptables=false --ip-masq=false \
    || { echo "docker-setup: dockerd did not come up; last lines of $log:" >&2; tail -30 "$log" >&2; exit 1; }
fi
"$docker_cli" info --format 'engine {{.ServerVersion}} storage={{.Driver}} cgroup={{.CgroupDriver}}/{{.CgroupVersion}}' || true
t1=$(date +%s)

export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import docker, kfp" 2>/dev/null; then
    echo "docker-setup: $py lacks the docker SDK or kfp; run \`pip install -e .[test]\` first" >&2
    exit 1
fi
"$py" -m localflow.images build-base
if [ "${LOCALFLOW_TRAINING_IMAGE:-1}" != 0 ] && "$py" -c "import importlib.util as u, sys; sys.exit(not all(map(u.find_spec, ('torch', 'sklearn', 'numpy'))))"; then
    "$py" -m localflow.images build-base --training
else
    echo "docker-setup: skipping localflow/training-python (torch/scikit-learn not installed here or LOCALFLOW_TRAINING_IMAGE=0)"
fi
t2=$(date +%s)
echo "docker-setup: engine ready in $((t1 - t0))s, images in $((t2 - t1))s, total $((t2 - t0))s"
