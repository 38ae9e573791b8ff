"""Ray's security settings for the local clusters the test suite and the benchmarks start.

Token authentication is on, with a token Ray's own generator makes: every gRPC call, the dashboard
and the dashboard agent's job endpoint (where an unauthenticated POST runs a shell command, the
ShadowRay attack) then refuse callers without it. On one node every Ray server also binds to
127.0.0.1: Ray takes loopback as the node IP when it is told that this machine runs no multi-node
cluster (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read on Linux too), the only switch it has for
that (`--node-ip-address 127.0.0.1` and `ray.init(_node_ip_address=...)` map loopback to the
machine's address). A run that adds a second node (`ray start --address`) cannot have that, so it
keeps token auth only.

The settings are environment variables, so the `ray start`, `ray job submit` and `mto` processes a
test or benchmark starts inherit them.
"""

from __future__ import annotations

import os
from pathlib import Path

# Ray reads these (ray._private.authentication, ray._private.ray_constants).
AUTH_MODE = "RAY_AUTH_MODE"
TOKEN = "RAY_AUTH_TOKEN"
TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
SINGLE_NODE_ON_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": node IP 127.0.0.1, no worker nodes


def secure_local_ray(token_file: Path | None = None, loopback: bool = True) -> None:
    """Turn token authentication on for the Ray clusters this process (and its children) start.

    A token already given (``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``) is kept. Otherwise the one in
    ``token_file`` (default: Ray's ``~/.ray/auth_token``) is used, generated there by Ray's generator,
    owner-only, if the file does not exist; ``RAY_AUTH_TOKEN_PATH`` then names it. ``loopback``: one node, every
    server on 127.0.0.1; False for a cluster that adds worker nodes.
    """
    os.environ[AUTH_MODE] = "token"
    if loopback:
        os.environ[SINGLE_NODE_ON_LOOPBACK] = "0"
    else:
        os.environ.pop(SINGLE_NODE_ON_LOOPBACK, None)
    # Ray reads that variable once, when ray_constants is first imported: if something imported Ray
    # before this call, its value for this process is set here too (children read the variable).
    import sys

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = not loopback and not constants.IS_WINDOWS_OR_OSX
    from ray._private.authentication.authentication_token_generator import generate_new_authentication_token
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    if TOKEN not in os.environ and TOKEN_PATH not in os.environ:
        token_file = token_file or _get_default_token_path()
        if not token_file.is_file():
            # Owner-only: Ray's own `generate_and_save_token` leaves the file as the umask has it (0644).
            token_file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as f:
                f.write(generate_new_authentication_token())
        os.environ[TOKEN_PATH] = str(token_file)
    # Ray caches its config and the token when loaded: refresh both, as Ray's own switch to token mode does.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
