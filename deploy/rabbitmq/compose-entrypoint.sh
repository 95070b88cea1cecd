#!/bin/sh
# compose.yaml's RabbitMQ: starts the broker, applies the definitions and the passwords
# (apply.sh), then marks itself ready for the health check. SIGTERM reaches the broker.
set -eu
rm -f /tmp/swarm-definitions-applied
docker-entrypoint.sh rabbitmq-server &
broker=$!
trap 'kill -TERM "$broker"' TERM INT
rabbitmqctl -q await_startup
sh /etc/swarm/apply.sh
touch /tmp/swarm-definitions-applied
# The first wait returns when the trap fires; the second waits for the broker to stop.
wait "$broker" || wait "$broker"
