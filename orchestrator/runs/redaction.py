"""Credentials out of what a run writes for others to read: MLflow params, the config.yaml
artifact, console lines (the job log on Kubernetes). A URI such as
``https://alice:s3cr3t@host/`` keeps its host, path and query and loses its userinfo.

Only what is shown or stored is redacted; the run itself keeps the URI it was given. A user who
wants the password out of the config file altogether sets ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` instead (MLflow reads them).
"""

from __future__ import annotations

import os
import re
from typing import Any

# scheme://userinfo@ : userinfo is everything before the last '@' of the authority (RFC 3986).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s@]*@)+")


def without_userinfo(text: str) -> str:
    """``text`` with the userinfo (user and password) of every URI in it removed."""
    return _USERINFO.sub(lambda m: m.group("scheme"), text)


def keep_mlflow_quiet_about(tracking_uri: str) -> None:
    """MLflow prints "View run ... at: <tracking URI>" when a run ends, credentials included; when the
    URI holds any, turn that off (for this process and the Ray workers it starts)."""
    if without_userinfo(tracking_uri) != tracking_uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def redacted(value: Any) -> Any:
    """A copy of plain data (dicts, lists, strings ...) with `without_userinfo` applied to every string."""
    if isinstance(value, str):
        return without_userinfo(value)
    if isinstance(value, dict):
        return {key: redacted(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redacted(item) for item in value)
    return value
