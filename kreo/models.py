from django.db import models


class Heartbeat(models.Model):
    """The last time each scheduled component proved it was alive."""

    component = models.CharField(max_length=64, unique=True)
    beat_at = models.DateTimeField()
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.component} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
