#!/bin/sh
# Applies deploy/rabbitmq/definitions.json (vhost `swarm`, its users, permissions, topology and
# policies) to a running broker, then sets each Swarm user's password from the environment:
#
#     SWARM_SITE_AMQP_PASSWORD=… SWARM_INGEST_AMQP_PASSWORD=… sh deploy/rabbitmq/apply.sh
#
# The definitions carry no password (users are imported without one, so they cannot log in);
# a user whose SWARM_<USER>_AMQP_PASSWORD is unset keeps no password. Importing resets the
# passwords of existing Swarm users, so run it whole (import and passwords) every time.
# Needs `rabbitmqctl` with access to the node (its Erlang cookie): on the broker's host or
# container. RABBITMQCTL may name another command (e.g. `kubectl exec rabbitmq-0 -- rabbitmqctl`).
set -eu
here=$(dirname "$0")
ctl=${RABBITMQCTL:-rabbitmqctl}
$ctl -q import_definitions "${DEFINITIONS:-$here/definitions.json}"
for user in site ingest features train report keda operator; do
  var="SWARM_$(echo "$user" | tr '[:lower:]' '[:upper:]')_AMQP_PASSWORD"
  password=$(printenv "$var" || true)
  if [ -n "$password" ]; then
    $ctl -q change_password "swarm-$user" "$password"
    echo "swarm-$user: password set"
  fi
done
