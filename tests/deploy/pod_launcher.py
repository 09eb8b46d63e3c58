"""Inside the pod's network and mount namespaces: mount the volumes, run the init containers, then
become the server container (exec, so signals sent to this process reach the server itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def main(plan_file: str) -> None:
    with open(plan_file, encoding="utf-8") as handle:
        plan = json.load(handle)
    if plan.get("hostname"):
        # What a container runtime does: its own hostname, resolving to the container's address.
        subprocess.run(["hostname", plan["hostname"]], check=True)
        subprocess.run(["mount", "--bind", plan["hosts_file"], "/etc/hosts"], check=True)
    for mount in plan["mounts"]:
        if mount["kind"] == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "tmpfs", mount["target"]], check=True)
        else:
            subprocess.run(["mount", "--bind", mount["source"], mount["target"]], check=True)
    for container in plan.get("init", []):
        print(f"pod: init container {container['argv']}", flush=True)
        subprocess.run(container["argv"], env=container["env"], check=True)
    for target in plan.get("read_only_for_server", []):
        subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)
    server = plan["server"]
    print(f"pod: server {server['argv']}", flush=True)
    os.execvpe(server["argv"][0], server["argv"], server["env"])


if __name__ == "__main__":
    main(sys.argv[1])
