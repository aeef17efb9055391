"""Joining a Ray cluster that uses token authentication (Ray 2.60's `ray start --head` turns it
on by default).

A client joining such a cluster must run with `RAY_AUTH_MODE=token` and find the head's token
(`RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH` names, or `~/.ray/auth_token`, which `ray
start --head` writes on the head). Ray's `ray.init(address=...)` does not turn the mode on by
itself, so without it the connection fails with a long traceback. `enable_token_auth` turns it
on when a token is there, and `explain_connect_error` makes the failure one line that says what
to set. The token itself is never logged or put in a spec.
"""

from __future__ import annotations

import os
from pathlib import Path

from assay.errors import AssayError

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"


def token_source() -> str | None:
    """Where a Ray auth token is available to this process (a description, never the token)."""
    if os.environ.get(TOKEN_ENV):
        return f"${TOKEN_ENV}"
    path = os.environ.get(TOKEN_PATH_ENV)
    if path and Path(path).expanduser().is_file():
        return path
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def enable_token_auth() -> bool:
    """Use token authentication to join a cluster when a token is available and the user has
    not chosen a mode. Returns whether token mode is on."""
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode is not None:
        return mode.lower() == "token"
    if token_source() is None:
        return False
    os.environ[AUTH_MODE_ENV] = "token"  # inherited by the job's processes too
    try:  # Ray read its config when imported: refresh it, as Ray does for its local clusters
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # another Ray version: the environment variable alone
        return True
    _enable_token_auth()
    return True


def explain_connect_error(address: str, err: BaseException) -> AssayError | None:
    """One line saying what to set, for an authentication failure joining `address`; None for
    any other error."""
    chain, cause = [], err
    while cause is not None and len(chain) < 10:  # Ray wraps the auth error in ConnectionError
        chain.append(f"{type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    text = " ".join(chain)
    if "auth" not in text.lower() and "token" not in text.lower():
        return None
    where = token_source()
    if where is None:
        fix = (f"copy the head's token (`ray get-auth-token` on the head) into {TOKEN_ENV} or "
               f"~/.ray/auth_token, and set {AUTH_MODE_ENV}=token")  # fmt: skip
    else:
        fix = f"the token in {where} is not the head's: replace it with `ray get-auth-token` run on the head"
    return AssayError(f"the Ray cluster at {address} requires token authentication: {fix}")
