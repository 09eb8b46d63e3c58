#!/usr/bin/env bash
# Setup for `python -m bench.plan_validation --fleet` (not needed by CI or the tests): the fleet
# runs behind a real load balancer, nginx from Debian's packages (nginx-light is enough: upstream,
# least_conn, proxy). Run as root on the development machine.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends nginx-light \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends nginx-light; }
fi
command -v taskset >/dev/null 2>&1 || { echo "taskset (util-linux) is missing" >&2; exit 1; }
echo "nginx: $(/usr/sbin/nginx -v 2>&1)"
