"""One-line explanations of destination failures, naming the setting or permission to fix."""

import re
from typing import Optional

BIGQUERY_ROLES = (
    "grant the loader's service account BigQuery Data Editor on the dataset (or its project)"
    " and BigQuery Job User on the project"
)
BIGQUERY_PROJECT_SETTING = (
    "project_id under [destination.bigquery] in .dlt/config.toml"
    " (DESTINATION__BIGQUERY__PROJECT_ID)"
)


def describe_destination_error(error: BaseException) -> Optional[str]:
    """The fix for a BigQuery access or project error; None for anything else.

    Google's own message is kept (it names the project and the missing permission); it never
    holds the key.
    """
    if isinstance(error, OSError) and "Project was not passed" in str(error):
        return (
            "BigQuery project unknown: the credentials name none. Set "
            f"{BIGQUERY_PROJECT_SETTING}, or put a service-account JSON, which names its"
            " project, in DESTINATION__BIGQUERY__CREDENTIALS."
        )
    if (
        type(error).__module__ == "google.auth.exceptions"
        and type(error).__name__ == "RefreshError"
    ):
        reason = str(error.args[0]) if error.args else "no reason given"
        return (
            f"Google refused the BigQuery credentials ({reason}): the service-account key in"
            " DESTINATION__BIGQUERY__CREDENTIALS is deleted, disabled or malformed, or the"
            " Application Default Credentials expired. Create a new key for the service account."
        )
    if not type(error).__module__.startswith("google.api_core"):
        return None
    status = getattr(error, "code", None)
    # google prefixes the request ("POST https://...: "); the reason is what follows
    reason = " ".join(str(getattr(error, "message", error)).split())
    reason = re.sub(r"^[A-Z]+ \S+: ", "", reason)
    if status == 403:
        return f"BigQuery denied access ({reason}): {BIGQUERY_ROLES}."
    if status == 401:
        return (
            f"BigQuery rejected the credentials ({reason}): check the service-account JSON in"
            " DESTINATION__BIGQUERY__CREDENTIALS, or your Application Default Credentials."
        )
    if status == 404 and "project" in reason.lower():
        return f"BigQuery project not found ({reason}): set {BIGQUERY_PROJECT_SETTING}."
    return None
