#!/usr/bin/env bash
# The gateway's Swarm tests run on a real engine: make it a single-node swarm if it is not one
# yet. The swarm listens on loopback only (advertise 127.0.0.1), so nothing leaves the machine.
set -euo pipefail

if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine is reachable (docker info failed); the Swarm tests need one." >&2
    echo "       start the engine (e.g. 'systemctl start docker' or 'dockerd &') and run this again." >&2
    exit 1
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
    active)
        echo "docker swarm: already active" ;;
    inactive)
        docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377 >/dev/null
        echo "docker swarm: initialised a single-node swarm on 127.0.0.1" ;;
    *)
        echo "error: this engine's swarm state is '$state'; expected active or inactive." >&2
        exit 1 ;;
esac
