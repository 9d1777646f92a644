"""The two D1 databases' schemas and their seeded rows (deterministic per rng).

`manuscript-platform` (seed 000) and `peptalk-production-db` (seed 004). Rows are
generated as tuples and written with executemany in one transaction, so a reset
stays fast even with 200,000 manuscripts.

Passwords: admins and prodtest1..5@example.com get real PBKDF2-SHA256 hashes of
TEST_PASSWORD (100,000 iterations, the Workers cap); every other user gets a random
salt and digest of the same shape, which no password matches.
"""

from __future__ import annotations

import base64
import hashlib
import random
import sqlite3
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

TEST_PASSWORD = "TestPass123@"
PBKDF2_ITERATIONS = 100_000
# hashlib releases the GIL: the few real hashes are computed while SQLite writes the rows
_HASHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="opsbook-pbkdf2")
MANUSCRIPT_COUNT = 200_000
Bulk = Callable[[sqlite3.Connection], None] | None  # a seeder's background phase

MANUSCRIPT_USERS = 8_000
PEPTALK_USERS = 2_000
STUDIES_PER_PEPTIDE = 50

MIGRATIONS_DDL = """CREATE TABLE IF NOT EXISTS d1_migrations(
\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,
\t\tname       TEXT UNIQUE,
\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);"""

USERS_DDL = """CREATE TABLE users (
  id TEXT PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  created_at TEXT NOT NULL,
  email_verified INTEGER NOT NULL DEFAULT 0,
  last_login TEXT
);"""

SUBSCRIPTIONS_DDL = """CREATE TABLE subscriptions (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  stripe_customer_id TEXT NOT NULL,
  stripe_subscription_id TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  plan TEXT NOT NULL,
  current_period_end TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX idx_subscriptions_user_id ON subscriptions(user_id);"""

VERIFICATION_TOKENS_DDL = """CREATE TABLE verification_tokens (
  token TEXT PRIMARY KEY,
  user_id TEXT NOT NULL REFERENCES users(id),
  token_type TEXT NOT NULL CHECK (token_type IN ('password_reset', 'email_verification')),
  expires_at TEXT NOT NULL,
  used INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL
);"""

MANUSCRIPT_DDL = f"""{MIGRATIONS_DDL}
{USERS_DDL}
CREATE TABLE manuscripts (
  id TEXT PRIMARY KEY,
  author_id TEXT NOT NULL REFERENCES users(id),
  title TEXT NOT NULL,
  status TEXT NOT NULL,
  word_count INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  r2_key TEXT NOT NULL
);
{VERIFICATION_TOKENS_DDL}
{SUBSCRIPTIONS_DDL}
"""

# The seed's own index statements (000 "Slow Response Times"); missing-index drops the first.
MANUSCRIPT_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_manuscripts_user_id ON manuscripts(author_id);",
    "CREATE INDEX IF NOT EXISTS idx_manuscripts_created ON manuscripts(created_at);",
    "CREATE INDEX IF NOT EXISTS idx_verification_tokens_user ON verification_tokens(user_id);",
)

PEPTALK_DDL = f"""{MIGRATIONS_DDL}
{USERS_DDL}
CREATE TABLE peptides (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  slug TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  evidence_grade TEXT NOT NULL CHECK (evidence_grade IN ('high', 'moderate', 'low', 'insufficient')),
  last_pipeline_run TEXT,
  page_version INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE studies (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  peptide_id INTEGER NOT NULL REFERENCES peptides(id),
  pmid TEXT NOT NULL,
  title TEXT NOT NULL,
  year INTEGER NOT NULL,
  summary TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX idx_studies_peptide_id ON studies(peptide_id);
{SUBSCRIPTIONS_DDL}
CREATE TABLE pipeline_runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  peptide_id INTEGER NOT NULL REFERENCES peptides(id),
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'success', 'failed')),
  error TEXT
);
CREATE INDEX idx_pipeline_runs_started ON pipeline_runs(started_at);
"""

MANUSCRIPT_MIGRATIONS = (
    "0001_initial_schema.sql",
    "0002_add_manuscripts.sql",
    "0003_add_verification_tokens.sql",
    "0004_add_subscriptions.sql",
    "0005_add_manuscript_indexes.sql",
)
PEPTALK_MIGRATIONS = (
    "0001_initial.sql",
    "0002_peptides_and_studies.sql",
    "0003_subscriptions.sql",
    "0004_pipeline_runs.sql",
)

# fmt: off
PEPTIDES = (
    "BPC-157", "TB-500", "GHK-Cu", "Semaglutide", "Tirzepatide", "Retatrutide", "Liraglutide",
    "Ipamorelin", "CJC-1295", "Sermorelin", "Tesamorelin", "Hexarelin", "GHRP-2", "GHRP-6",
    "Epitalon", "Thymosin Alpha-1", "Thymosin Beta-4", "Selank", "Semax", "PT-141",
    "Melanotan II", "AOD-9604", "MOTS-c", "Humanin", "SS-31", "KPV", "LL-37", "Dihexa",
    "Cerebrolysin", "Kisspeptin-10", "Oxytocin", "DSIP", "Thymalin", "Pinealon", "Cortagen",
    "Vesugen", "Cagrilintide", "Mazdutide", "Survodutide", "Follistatin-344", "IGF-1 LR3",
    "MGF", "PEG-MGF", "Gonadorelin", "Triptorelin", "Larazotide", "Aviptadil", "Teriparatide",
    "Abaloparatide", "Setmelanotide", "ARA-290", "FOXO4-DRI", "Glutathione", "Carnosine",
    "AHK-Cu", "Snap-8", "Argireline", "Matrixyl", "VIP", "Adipotide",
)
_FIRST = (
    "alex", "sam", "jordan", "taylor", "morgan", "casey", "riley", "jamie", "drew", "avery",
    "quinn", "rowan", "harper", "emerson", "kai", "logan", "parker", "reese", "sage", "skyler",
    "maria", "li", "omar", "priya", "sofia", "noah", "emma", "liam",
)
_LAST = (
    "smith", "garcia", "chen", "patel", "kim", "nguyen", "okafor", "muller", "rossi", "silva",
    "novak", "tanaka", "cohen", "ali", "brown", "jones", "lopez", "wilson",
)
_DOMAINS = (
    "gmail.com", "yahoo.com", "outlook.com", "proton.me", "icloud.com", "hey.com",
)
_WORDS = (
    "The", "Silent", "River", "Night", "Garden", "Of", "Glass", "Last", "Winter", "Letters",
    "Empire", "Shadow", "Light", "Salt", "House", "Memory", "Storm", "Crown", "Wild", "Paper",
    "Ghost", "Harbor", "Iron", "Summer", "Hollow", "Orchard", "Stone",
)
_STATUSES = ("draft",) * 5 + ("submitted",) * 3 + ("analyzed",) * 6 + ("analyzing", "failed")
_STUDY_TOPICS = (
    "tendon healing", "gut barrier function", "wound repair", "glycemic control", "body weight",
    "sleep quality", "cognitive performance", "inflammation markers",
    "muscle protein synthesis", "bone density", "skin elasticity", "immune response",
)
_STUDY_KINDS = (
    "A randomized controlled trial of", "A rodent model of", "Case series:",
    "A systematic review of", "An open-label pilot study of", "In vitro effects of",
)
# fmt: on


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def iso_s(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sql_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def pbkdf2_hash(password: str, salt: bytes, iterations: int = PBKDF2_ITERATIONS) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations, 32)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def _opaque_hash(rng: random.Random) -> str:
    b64 = base64.b64encode
    salt, digest = rng.randbytes(16), rng.randbytes(32)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def rid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def stripe_id(rng: random.Random, prefix: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "_" + "".join(rng.choice(alphabet) for _ in range(14))


def _users(
    rng: random.Random, now: datetime, count: int, admins: tuple[str, ...]
) -> tuple[list[tuple[object, ...]], list[tuple[str, Future[str]]]]:
    """User rows, and (user id, future hash) for the users with the test password: their
    100,000-iteration hashes are computed in the background (`_set_passwords`)."""
    rows: list[tuple[object, ...]] = []
    hashes: list[tuple[str, Future[str]]] = []
    seen: set[str] = set()
    special = [(a, "admin") for a in admins] + [
        (f"prodtest{i}@example.com", "user") for i in range(1, 6)
    ]
    for email, role in special:
        created = now - timedelta(days=rng.uniform(200, 400))
        user_id = rid(rng)
        hashes.append((user_id, _HASHER.submit(pbkdf2_hash, TEST_PASSWORD, rng.randbytes(16))))
        last = now - timedelta(hours=rng.uniform(1, 72))
        rows.append((user_id, email, "", role, iso(created), 1, iso(last)))
        seen.add(email)
    while len(rows) < count:
        first, last_name = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first}.{last_name}{rng.randint(1, 9999)}@{rng.choice(_DOMAINS)}"
        if email in seen:
            continue
        seen.add(email)
        created = now - timedelta(days=rng.uniform(1, 720))
        verified = 1 if rng.random() < 0.85 else 0
        login = created + (now - created) * rng.random() if rng.random() < 0.9 else None
        rows.append(
            (
                rid(rng),
                email,
                _opaque_hash(rng),
                "user",
                iso(created),
                verified,
                iso(login) if login else None,
            )
        )
    return rows, hashes


def _set_passwords(db: sqlite3.Connection, hashes: list[tuple[str, Future[str]]]) -> None:
    db.executemany(
        "UPDATE users SET password_hash = ? WHERE id = ?", [(f.result(), uid) for uid, f in hashes]
    )


def _subscriptions(
    rng: random.Random,
    now: datetime,
    users: list[tuple[object, ...]],
    share: float,
    plans: tuple[str, ...],
    testers: bool = False,
) -> list[tuple[object, ...]]:
    """Subscriptions for a share of users (and, with `testers`, every prodtest user).

    One Stripe account serves both apps in the sandbox, so only one app's prodtest
    users subscribe: an email then names one Stripe customer.
    """
    rows: list[tuple[object, ...]] = []
    for user in users:
        email = str(user[1])
        tester = email.startswith("prodtest")
        if (tester and not testers) or (not tester and rng.random() >= share):
            continue
        roll = rng.random()
        created = now - timedelta(days=rng.uniform(20, 400))
        if email.startswith("prodtest") or roll < 0.82:
            status, end = "active", now + timedelta(days=rng.uniform(3, 29))
        elif roll < 0.90:
            status, end = "canceled", now - timedelta(days=rng.uniform(5, 90))
        elif roll < 0.95:
            status, end = "past_due", now - timedelta(days=rng.uniform(1, 6))
        else:
            status, end = "incomplete_expired", now - timedelta(days=rng.uniform(30, 200))
        updated = min(now, end - timedelta(days=30)) if status == "active" else end
        rows.append(
            (
                rid(rng),
                user[0],
                stripe_id(rng, "cus"),
                stripe_id(rng, "sub"),
                status,
                rng.choice(plans),
                iso_s(end),
                iso(created),
                iso(max(created, updated)),
            )
        )
    return rows


def _migrations(db: sqlite3.Connection, names: tuple[str, ...], now: datetime) -> None:
    start = now - timedelta(days=180)
    db.executemany(
        "INSERT INTO d1_migrations(name, applied_at) VALUES (?, ?)",
        [(n, sql_ts(start + timedelta(days=30 * i, seconds=i))) for i, n in enumerate(names)],
    )


_MANUSCRIPTS_SQL = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count),
h AS (SELECT i, (i * 1103515245 + :s) % 2147483648 AS a,
             (i * 2654435761 + :s * 7) % 4294967296 AS b,
             (i * 40503 + :s * 13) % 1000003 AS c FROM n),
r AS (SELECT i, a, b, c,
        printf('%08x-%04x-7%03x-%04x-%012x', 402653184 + i * 9973, a % 65536, c % 4096,
               32768 + (a / 65536) % 16384, (a * 65537 + c) % 281474976710656) AS mid,
        :now - (b % :span) AS created,
        -- skewed authors: the product of two uniforms favours the first users
        1 + ((a % :users) * (c % :users)) / :users AS author_row
      FROM h)
INSERT INTO manuscripts
SELECT mid, u.id,
       rtrim(substr(:words, (a % 27) * 8 + 1, 8)) || ' ' || rtrim(substr(:words, (b % 27) * 8 + 1, 8))
         || CASE WHEN c % 3 > 0 THEN ' ' || rtrim(substr(:words, (c % 27) * 8 + 1, 8)) ELSE '' END,
       rtrim(substr(:statuses, ((a / 7) % 16) * 10 + 1, 10)),
       800 + (b / 3) % 139200,
       strftime('%Y-%m-%dT%H:%M:%fZ', created, 'unixepoch'),
       strftime('%Y-%m-%dT%H:%M:%fZ', min(:now, created + c % 259200), 'unixepoch'),
       'manuscripts/' || u.id || '/' || mid || '.docx'
FROM r JOIN users u ON u.rowid = r.author_row
"""


def _manuscript_params(rng: random.Random, now: datetime, users: int) -> dict[str, object]:
    """The parameters of _MANUSCRIPTS_SQL: 200,000 manuscripts generated inside SQLite (a
    Python loop takes 10 s). Ids ascend (UUIDv7-like) so the primary-key index is written
    in order."""
    words = list(_WORDS)
    rng.shuffle(words)
    return {
        "count": MANUSCRIPT_COUNT,
        "s": rng.getrandbits(30),
        "now": int(now.timestamp()),
        "span": 540 * 86400,
        "users": users,
        # word lists packed at a fixed width: substr() is far cheaper than a lookup per row
        "words": "".join(w.ljust(8) for w in words),
        "statuses": "".join(w.ljust(10) for w in _STATUSES),
    }


def seed_manuscript(db: sqlite3.Connection, rng: random.Random, now: datetime) -> Bulk:
    """Users, tokens and subscriptions; returns the bulk phase (200,000 manuscripts, the
    indexes, the real password hashes), which d1data runs in the background."""
    _migrations(db, MANUSCRIPT_MIGRATIONS, now)
    users, hashes = _users(
        rng, now, MANUSCRIPT_USERS, ("scarter4work@yahoo.com", "admin@example.com")
    )
    db.executemany("INSERT INTO users VALUES (?,?,?,?,?,?,?)", users)
    params = _manuscript_params(rng, now, len(users))
    tokens = []
    for user in rng.sample(users, 400):
        kind = rng.choice(("password_reset", "email_verification"))
        created = now - timedelta(hours=rng.uniform(0, 24 * 20))
        expires = created + timedelta(hours=1 if kind == "password_reset" else 24)
        used = 1 if expires < now and rng.random() < 0.7 else 0
        tokens.append((rng.randbytes(24).hex(), user[0], kind, iso(expires), used, iso(created)))
    db.executemany("INSERT INTO verification_tokens VALUES (?,?,?,?,?,?)", tokens)
    subs = _subscriptions(rng, now, users, 0.12, ("writer_monthly", "writer_annual", "pro_monthly"))
    db.executemany("INSERT INTO subscriptions VALUES (?,?,?,?,?,?,?,?,?)", subs)

    def bulk(db: sqlite3.Connection) -> None:
        db.execute(_MANUSCRIPTS_SQL, params)
        for ddl in MANUSCRIPT_INDEXES:
            db.execute(ddl)
        _set_passwords(db, hashes)

    return bulk


def seed_peptalk(db: sqlite3.Connection, rng: random.Random, now: datetime) -> Bulk:
    _migrations(db, PEPTALK_MIGRATIONS, now)
    users, hashes = _users(rng, now, PEPTALK_USERS, ("eng@peptalk.com", "admin@peptalk.com"))
    db.executemany("INSERT INTO users VALUES (?,?,?,?,?,?,?)", users)
    grades = ("high", "moderate", "moderate", "low", "low", "insufficient")
    peptides, studies, runs = [], [], []
    pmid = 30_000_000
    for pid, name in enumerate(PEPTIDES, start=1):
        slug = name.lower().replace(" ", "-").replace("+", "")
        created = now - timedelta(days=rng.uniform(120, 300))
        grade, page_version = rng.choice(grades), rng.randint(3, 40)
        for _ in range(STUDIES_PER_PEPTIDE):
            pmid += rng.randint(1, 60_000)
            topic = rng.choice(_STUDY_TOPICS)
            title = f"{rng.choice(_STUDY_KINDS)} {name} on {topic}"
            summary = (
                f"{name} was studied for {topic}. n={rng.randint(8, 400)}; "
                f"effect size {rng.uniform(-0.2, 1.4):.2f}; follow-up {rng.randint(2, 52)} weeks."
            )
            studies.append(
                (pid, str(pmid), title, rng.randint(1995, now.year), summary, iso(created))
            )
        # a nightly run (02:xx UTC) per peptide for 30 nights, through today's once it finished
        nights: list[datetime] = []
        for day in range(0, 31):
            started = (now - timedelta(days=day)).replace(
                hour=2, minute=rng.randint(0, 59), second=0
            )
            failed = day > 3 and rng.random() < 0.03
            finished = started + timedelta(seconds=rng.uniform(40, 400))
            error = "PubMed API timeout after 30000 ms" if failed else None
            if finished > now or len(nights) == 30:
                continue
            nights.append(started)
            runs.append(
                (pid, iso(started), iso(finished), "failed" if failed else "success", error)
            )
            if failed:  # the retry an hour later succeeded
                retry = started + timedelta(hours=1)
                runs.append((pid, iso(retry), iso(retry + timedelta(seconds=90)), "success", None))
        last_run = nights[0]
        peptides.append(
            (pid, slug, name, grade, iso(last_run), page_version, iso(created), iso(last_run))
        )
    db.executemany("INSERT INTO peptides VALUES (?,?,?,?,?,?,?,?)", peptides)
    db.executemany(
        "INSERT INTO studies(peptide_id, pmid, title, year, summary, created_at) VALUES (?,?,?,?,?,?)",
        studies,
    )
    runs.sort(key=lambda r: str(r[1]))
    db.executemany(
        "INSERT INTO pipeline_runs(peptide_id, started_at, finished_at, status, error) VALUES (?,?,?,?,?)",
        runs,
    )
    subs = _subscriptions(rng, now, users, 0.3, ("pro_monthly", "pro_annual"), testers=True)
    db.executemany("INSERT INTO subscriptions VALUES (?,?,?,?,?,?,?,?,?)", subs)
    _set_passwords(db, hashes)
    return None


# name -> (DDL run first, row seeder run inside one transaction). A seeder may return its
# bulk phase: d1data commits the seeder's rows (other modules read them at once) and runs
# the bulk in a second transaction in the background, while the next modules seed.
SEEDERS = {
    "manuscript-platform": (MANUSCRIPT_DDL, seed_manuscript),
    "peptalk-production-db": (PEPTALK_DDL, seed_peptalk),
}
PROFILE_DB = {"manuscript": "manuscript-platform", "peptalk": "peptalk-production-db"}
