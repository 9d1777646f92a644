"""Check SQL before it runs: parse it with sqlglot (SQLite dialect), never by pattern.

    g = check("DELETE FROM users WHERE email LIKE 'prodtest%@example.com'")
    g.kind, g.target, g.where, g.refused        # 'write', 'users', "email LIKE ...", None
    preview_sql(g.statement)                    # the SELECT of exactly the rows it touches
    paginate("SELECT * FROM users", 100, 200)   # LIMIT/OFFSET set through the AST

Refused whatever is approved: a parse error; more than one statement; an UPDATE or
DELETE whose WHERE does not restrict rows (none, a tautology, a predicate on no column
of the target, a column compared with itself, `LIKE '%'`, `P OR NOT P`, or a subquery
that selects every row of the target); DDL unless `allow_ddl`; anything that is not a
query, a write or DDL (PRAGMA, ATTACH, transactions...). What runs is `Guarded.sql`,
the statement regenerated from the checked tree without comments, so what was checked
is exactly what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError
from sqlglot.optimizer.simplify import simplify

DIALECT = "sqlite"
READ, WRITE, DDL, OTHER = "read", "write", "ddl", "other"
DDL_TYPES = (exp.Create, exp.Drop, exp.Alter, exp.TruncateTable)
WRITE_TYPES = (exp.Insert, exp.Update, exp.Delete, exp.Merge)


@dataclass
class Guarded:
    """What `check` found. `refused` is the reason, or None when the statement may run."""

    source: str
    kind: str = OTHER
    statements: int = 0
    statement: exp.Expr | None = None
    sql: str = ""
    tables: list[str] = field(default_factory=list)
    target: str | None = None
    where: str | None = None
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    @property
    def destructive(self) -> bool:
        """Drops or rewrites existing rows (every write but a plain INSERT is treated so)."""
        return self.kind == DDL or isinstance(self.statement, exp.Update | exp.Delete)

    def summary(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "statements": self.statements,
            "tables": self.tables,
            "target": self.target,
            "where": self.where,
            "refused": self.refused,
            "sql": self.sql,
        }


def _parse(sql: str) -> list[exp.Expr]:
    return [s for s in sqlglot.parse(sql, read=DIALECT, error_level=ErrorLevel.RAISE) if s]


def parse_message(exc: ParseError) -> str:
    """sqlglot's first error, without its terminal colour codes."""
    if not exc.errors:
        return str(exc).splitlines()[0]
    e = exc.errors[0]
    near = f"{e.get('start_context', '')}{e.get('highlight', '')}".strip()
    return f"{e['description']} at line {e['line']}, column {e['col']} (near {near!r})"


def kind_of(stmt: exp.Expr) -> str:
    if isinstance(stmt, exp.Query):
        return READ
    if isinstance(stmt, WRITE_TYPES):
        return WRITE
    if isinstance(stmt, DDL_TYPES):
        return DDL
    return OTHER


def _table_name(table: exp.Table) -> str:
    return ".".join(p for p in (table.db, table.name) if p)


def _target(stmt: exp.Expr) -> exp.Table | None:
    node = stmt.this if isinstance(stmt, WRITE_TYPES) else None
    if isinstance(node, exp.Schema):
        node = node.this
    return node if isinstance(node, exp.Table) else None


def _ctes(stmt: exp.Expr) -> dict[str, exp.Expr]:
    return {cte.alias_or_name: cte.this for cte in stmt.find_all(exp.CTE)}


def tables_of(stmt: exp.Expr) -> list[str]:
    """Real tables named anywhere in the statement (CTE names excluded)."""
    ctes = _ctes(stmt)
    names = {_table_name(t) for t in stmt.find_all(exp.Table) if t.name}
    return sorted(n for n in names if n not in ctes)


def _own_columns(pred: exp.Expr, names: set[str]) -> list[exp.Column]:
    """Columns of the target: unqualified ones outside subqueries, or qualified by
    the target's name or alias anywhere (correlated subqueries)."""
    found = []
    for col in pred.find_all(exp.Column):
        inside = col.find_ancestor(exp.Select, exp.SetOperation) is not None
        if col.table in names or (not col.table and not inside):
            found.append(col)
    return found


def _same(a: exp.Expr, b: exp.Expr) -> bool:
    return a.sql(DIALECT, comments=False) == b.sql(DIALECT, comments=False)


def _reads_every_row(query: exp.Expr, target: str, ctes: dict[str, exp.Expr]) -> bool:
    """A SELECT over the target (directly or through a CTE) with no restricting WHERE."""
    if isinstance(query, exp.Subquery):
        query = query.this
    if not isinstance(query, exp.Select) or query.args.get("limit") or query.args.get("joins"):
        return False
    source = query.args.get("from_")
    table = source.this if source else None
    if not isinstance(table, exp.Table):
        return False
    name = _table_name(table)
    where = query.args.get("where")
    if name in ctes and name != target:
        inner = ctes[name]
        return where is None and _reads_every_row(inner, target, ctes)
    if name != target:
        return False
    if where is None:
        return True
    return _why_not_restricting(where.this, {target, table.alias_or_name}, target, ctes) is not None


def _why_not_restricting(
    pred: exp.Expr, names: set[str], target: str, ctes: dict[str, exp.Expr]
) -> str | None:
    """None when `pred` restricts the target's rows, else why it does not."""
    pred = simplify(pred.copy(), dialect=DIALECT)
    while isinstance(pred, exp.Paren):
        pred = pred.this
    if isinstance(pred, exp.Boolean) and pred.this:
        return "the WHERE is always true (it simplifies to TRUE)"
    if isinstance(pred, exp.And):
        reasons = [_why_not_restricting(p, names, target, ctes) for p in pred.flatten()]
        return None if any(r is None for r in reasons) else reasons[0]
    if isinstance(pred, exp.Or):
        parts = list(pred.flatten())
        for p in parts:
            if isinstance(p, exp.Not) and any(_same(p.this, q) for q in parts):
                return f"the WHERE is always true ({p.this.sql(DIALECT)} OR NOT ...)"
        for p in parts:
            if reason := _why_not_restricting(p, names, target, ctes):
                return f"one side of an OR does not restrict: {reason}"
        return None
    if not _own_columns(pred, names):
        return f"the WHERE ({pred.sql(DIALECT)}) refers to no column of {target}, so it selects all rows or none"
    selfish = exp.EQ | exp.GTE | exp.LTE | exp.NullSafeEQ | exp.Like | exp.Glob
    if isinstance(pred, selfish) and _same(pred.this, pred.expression):
        return f"the WHERE compares {pred.this.sql(DIALECT)} with itself: every row matches"
    if isinstance(pred, exp.Like | exp.ILike | exp.Glob) and isinstance(
        pred.expression, exp.Literal
    ):
        wildcard = "*" if isinstance(pred, exp.Glob) else "%"
        pattern = pred.expression.this
        if pattern and set(pattern) <= {wildcard}:
            return f"the pattern {pattern!r} matches every value"
    query = pred.args.get("query") if isinstance(pred, exp.In) else None
    if query is not None and _reads_every_row(query, target, ctes):
        return f"the subquery selects every row of {target}, so every row matches"
    return None


def _check_write(g: Guarded, stmt: exp.Expr) -> None:
    if not isinstance(stmt, exp.Update | exp.Delete):
        return
    verb = "UPDATE" if isinstance(stmt, exp.Update) else "DELETE"
    where = stmt.args.get("where")
    if where is None:
        g.refused = f"{verb} without WHERE would touch every row of {g.target}; refused whatever is approved"
        return
    g.where = where.this.sql(DIALECT, comments=False)
    table = _target(stmt)
    names = {g.target or "", table.alias_or_name if table else ""} - {""}
    reason = _why_not_restricting(where.this, names, g.target or "", _ctes(stmt))
    if reason:
        g.refused = (
            f"{verb} whose WHERE does not restrict rows: {reason}; refused whatever is approved"
        )


def check(sql: str, *, allow_ddl: bool = False) -> Guarded:
    """Parse and judge one statement. Never raises for bad SQL: see `refused`."""
    g = Guarded(source=sql)
    try:
        statements = _parse(sql)
    except ParseError as exc:
        g.refused = f"the SQL does not parse (sqlglot, SQLite dialect): {parse_message(exc)}"
        return g
    g.statements = len(statements)
    if not statements:
        g.refused = "there is no SQL statement (empty, or only comments)"
        return g
    if len(statements) > 1:
        g.refused = (
            f"{len(statements)} statements in one string; run one statement per call so each "
            "is checked and previewed on its own"
        )
        return g
    stmt = g.statement = statements[0]
    g.kind = kind_of(stmt)
    g.sql = stmt.sql(DIALECT, comments=False)
    g.tables = tables_of(stmt)
    table = _target(stmt)
    g.target = _table_name(table) if table is not None else None
    if g.kind == OTHER:
        shown = stmt.key.upper() if not isinstance(stmt, exp.Command) else str(stmt.this)
        g.refused = (
            f"{shown} is not a query, a write or a schema change that can be checked; "
            "only SELECT, INSERT, UPDATE and DELETE run here (schema: "
            "SELECT * FROM pragma_table_info('users'))"
        )
    elif g.kind == DDL and not allow_ddl:
        g.refused = f"{stmt.key.upper()} changes the schema; that is the db-migrate runbook's job"
    elif g.kind == WRITE:
        _check_write(g, stmt)
    return g


@dataclass(frozen=True)
class Preview:
    rows_sql: str  # the rows the write would touch
    count_sql: str  # how many
    params_from: int  # the write's params that the preview uses: params[params_from:]...
    params_skip: int  # ...minus this many after the CTE's (those of the SET clause)


def count_rows_sql(stmt: exp.Expr) -> str:
    """SELECT COUNT(*) AS n over the whole target table of a write."""
    table = _target(stmt)
    if table is None:
        raise ValueError(f"{stmt.key.upper()} has no target table")
    bare = exp.Table(this=table.this.copy(), db=table.args.get("db"))
    return exp.select(exp.Count(this=exp.Star()).as_("n")).from_(bare).sql(DIALECT)


def dependents_sql(rows_sql: str, child: str, column: str, ref: str) -> str:
    """COUNT(*) of `child` rows whose `column` points at (`ref` of) the rows `rows_sql`
    selects: what a DELETE would leave dangling. Identifiers are quoted, never pasted."""
    inner = sqlglot.parse_one(rows_sql, read=DIALECT)
    if not isinstance(inner, exp.Select):
        raise ValueError("dependents_sql() takes the rows SELECT of preview_sql()")
    inner = inner.select(exp.column(ref, quoted=True), append=False)
    target = exp.column(column, table=child, quoted=True)
    count = exp.select(exp.Count(this=exp.Star()).as_("n")).from_(exp.table_(child, quoted=True))
    return count.where(target.isin(query=inner)).sql(DIALECT)


def _placeholders(node: exp.Expr | None) -> int:
    return 0 if node is None else sum(1 for _ in node.find_all(exp.Placeholder))


def preview_sql(stmt: exp.Expr) -> Preview:
    """For UPDATE/DELETE: the SELECT of exactly the rows it would touch, and its COUNT(*)."""
    if not isinstance(stmt, exp.Update | exp.Delete):
        raise ValueError(f"only UPDATE and DELETE have a preview, not {stmt.key.upper()}")
    table = _target(stmt)
    if table is None:
        raise ValueError("the statement has no target table")
    select = exp.select(exp.Star()).from_(table.copy())
    extra = stmt.args.get("from_")
    if extra is not None:  # UPDATE ... FROM: join, and one row per target row
        alias = table.alias_or_name
        select = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier(alias)))
        select = select.from_(table.copy()).distinct()
        for source in [extra.this, *[j.this for j in stmt.args.get("joins") or []]]:
            select = select.join(source.copy(), join_type="CROSS")
    for arg in ("where", "order", "limit"):
        if stmt.args.get(arg) is not None:
            select.set(arg, stmt.args[arg].copy())
    with_ = stmt.args.get("with_")
    count = exp.select(exp.Count(this=exp.Star()).as_("n")).from_(select.subquery("touched"))
    if not any(select.args.get(a) for a in ("order", "limit", "distinct")):
        count = select.copy().select(exp.Count(this=exp.Star()).as_("n"), append=False)
        count.set("order", None)
    if with_ is not None:
        select.set("with_", with_.copy())
        count.set("with_", with_.copy())
    skip = (
        _placeholders(exp.Tuple(expressions=stmt.expressions))
        if isinstance(stmt, exp.Update)
        else 0
    )
    return Preview(select.sql(DIALECT), count.sql(DIALECT), _placeholders(with_), skip)


def preview_params(preview: Preview, params: list[object]) -> list[object]:
    """The write's positional params, minus those of its SET clause."""
    cut = preview.params_from
    return [*params[:cut], *params[cut + preview.params_skip :]]


def _int(node: exp.Expr | None) -> int | None:
    if node is None:
        return None
    value = node.expression if isinstance(node, exp.Limit | exp.Offset) else node
    value = simplify(value.copy(), dialect=DIALECT)
    return int(value.this) if isinstance(value, exp.Literal) and value.is_int else -1


def paginate(sql: str, limit: int, offset: int = 0) -> str:
    """A read limited to `limit` rows from `offset`, inside its own LIMIT/OFFSET if it
    has them (a smaller LIMIT wins). Raises ValueError for anything but one query."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    statements = _parse(sql)
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ValueError("paginate() takes exactly one SELECT")
    query = statements[0]
    own_limit, own_offset = _int(query.args.get("limit")), _int(query.args.get("offset"))
    if -1 in (own_limit, own_offset):  # LIMIT ? or an expression: wrap, keep its meaning
        query = exp.select(exp.Star()).from_(query.subquery("q"))
        own_limit, own_offset = None, None
    new_limit = limit if own_limit is None else max(0, min(limit, own_limit - offset))
    query.set("limit", exp.Limit(expression=exp.Literal.number(new_limit)))
    start = (own_offset or 0) + offset
    query.set("offset", exp.Offset(expression=exp.Literal.number(start)) if start else None)
    return query.sql(DIALECT, comments=False)
