"""Make the audit trail append-only in the database itself (see governance/triggers.py)."""

from django.db import migrations

from governance import triggers


def forwards(apps, schema_editor):
    columns = triggers.guarded_columns(apps.get_model("governance", "AuditLogEntry"))
    for statement in triggers.create_statements(schema_editor.connection.vendor, columns):
        schema_editor.execute(statement)


def backwards(apps, schema_editor):
    for statement in triggers.drop_statements(schema_editor.connection.vendor):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("governance", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
