"""The two seeded platforms: which worker, database, namespace, bucket and queues each has.

The same names as params/local.yaml and params/local-peptalk.yaml (`app.*`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    worker: str
    database: str
    kv_sessions: str
    r2_bucket: str
    queue: str
    dlq: str
    required_secrets: tuple[str, ...]
    email_vars: dict[str, str]
    author: str
    frontend_origin: str


PROFILES: dict[str, Profile] = {
    "manuscript": Profile(
        name="manuscript",
        worker="manuscript-upload-api",
        database="manuscript-platform",
        kv_sessions="manuscript-sessions",
        r2_bucket="manuscript-uploads",
        queue="manuscript-analysis-queue",
        dlq="manuscript-analysis-dlq",
        required_secrets=(
            "JWT_SECRET",
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "ANTHROPIC_API_KEY",
        ),
        email_vars={
            "EMAIL_FROM": "noreply@scarter4workmanuscripthub.com",
            "EMAIL_FROM_NAME": "Manuscript Hub",
        },
        author="scarter4work@yahoo.com",
        frontend_origin="https://scarter4workmanuscripthub.com",
    ),
    "peptalk": Profile(
        name="peptalk",
        worker="peptalk-api",
        database="peptalk-production-db",
        kv_sessions="peptalk-sessions",
        r2_bucket="peptalk-pdfs",
        queue="peptalk-pipeline-queue",
        dlq="peptalk-pipeline-dlq",
        required_secrets=(
            "JWT_SECRET",
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRET",
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
        ),
        email_vars={"EMAIL_FROM": "noreply@peptalk.com"},
        author="eng@peptalk.com",
        frontend_origin="https://peptalk.com",
    ),
}


def by_worker(script: str) -> Profile | None:
    return next((p for p in PROFILES.values() if p.worker == script), None)
