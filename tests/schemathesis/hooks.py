"""Schemathesis hooks for tests/schemathesis/run.sh.

An Idempotency-Key names one request: reused with another body it is rightly refused with 422, a rule
across requests that no schema can state. Generated keys are short and repeat, so each generated
request gets a fresh key of the documented shape; replays are tested in tests/idempotency.rs.
"""

import uuid

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # A negative case must reach the server as generated (and any answer to it is a rejection anyway);
    # touching its headers would turn it into a positive one.
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    headers = case.headers
    if headers and "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = uuid.uuid4().hex
