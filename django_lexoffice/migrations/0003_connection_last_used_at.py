from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("django_lexoffice", "0002_webhooks_and_renewal")]

    operations = [
        migrations.AddField(
            model_name="lexofficeconnection",
            name="last_used_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="last used at"
            ),
        ),
    ]
