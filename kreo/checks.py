"""Deploy checks: every key in the settings has the format its user expects.

The same rules production settings enforce at start (kreo.keyformats), for
`manage.py check --deploy`, each problem an error naming the variable.
"""

from django.conf import settings
from django.core.checks import Error, Tags, register

from kreo import keyformats


@register(Tags.security, deploy=True)
def key_format_check(app_configs=None, **kwargs):
    values = {
        name: str(getattr(settings, keyformats.SETTING_NAMES.get(name, name), "") or "")
        for name in keyformats.IDS
    }
    return [
        Error(message, hint="See .env.example.", id=keyformats.IDS[variable])
        for variable, message in keyformats.problems(values)
    ]
