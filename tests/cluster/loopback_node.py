"""`ray start` for a node that joins a cluster on 127.0.0.1 and stays on loopback.

Ray rewrites a loopback address to the machine's network address when a node joins, and its
switch to stay on loopback refuses multi-node clusters. Tests may only talk to loopback, so
this runs Ray's own `ray start` command with that rewrite disabled. Used by tests only.
"""

import sys

import ray._private.services as services


def _loopback(address=None):
    return "127.0.0.1"


services.resolve_ip_for_localhost = lambda host: host
services.get_node_ip_address = _loopback

if __name__ == "__main__":
    from ray.scripts.scripts import main

    sys.argv = ["ray", "start", *sys.argv[1:]]
    main()
