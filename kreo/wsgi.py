import os

from django.core.wsgi import get_wsgi_application

from kreo.datastack import HeadroomApplication

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kreo.settings.local")
# Each request from the start of its own frame-stack chunk (kreo/datastack.py).
application = HeadroomApplication(get_wsgi_application())
