#!/bin/sh
# compose.yaml's RabbitMQ: starts the broker, applies the definitions and the passwords
# (apply.sh), then marks itself ready for the health check. SIGTERM reaches the broker.
set -eu
rm -f /tmp/swarm-definitions-applied
docker-entrypoint.sh rabbitmq-server &
broker=$!
trap 'kill -TERM "$broker"' TERM INT
# The CLI must use the cookie the server writes (the image's HOME is /var/lib/rabbitmq), so it
# waits for the server to write it, then for the node to boot; it gives up if the broker exits.
until [ -s /var/lib/rabbitmq/.erlang.cookie ] && rabbitmqctl -q await_startup >/dev/null 2>&1; do
  kill -0 "$broker" 2>/dev/null || exit 1
  sleep 2
done
sh /etc/swarm/apply.sh
touch /tmp/swarm-definitions-applied
# The first wait returns when the trap fires; the second waits for the broker to stop.
wait "$broker" || wait "$broker"
