"""auditlog's own migrations create `auditlog_logentry` even though AUDITLOG_LOGENTRY_MODEL
swaps it for governance.AuditLogEntry. The table is never written; it is dropped so that no
unchained audit table exists (and so `flush` can truncate content types on PostgreSQL).
auditlog is pinned below 3.5 in pyproject.toml: a later auditlog migration that alters the
dropped table must be reviewed before upgrading (docs/decisions/0005-audit-hash-chain.md)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0002_audit_append_only"),
        ("auditlog", "0017_add_actor_email"),
    ]
    operations = [
        migrations.RunSQL(
            "DROP TABLE IF EXISTS auditlog_logentry", reverse_sql=migrations.RunSQL.noop
        )
    ]
