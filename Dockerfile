# The Kreo application image: web (gunicorn), Celery worker and beat, and the
# one-shot migrate job all run from it (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=kreo.settings.production

# A fixed, unprivileged account: the app never runs as root.
RUN groupadd --system --gid 10001 kreo \
    && useradd --system --uid 10001 --gid kreo --home-dir /app \
       --shell /usr/sbin/nologin kreo

WORKDIR /app

# Pango and a font for WeasyPrint, which draws the compliance evidence
# pack's PDF report (compliance/pdf.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, so a code change does not reinstall them. The wheels
# (psycopg[binary], argon2-cffi, cryptography) need no compiler.
COPY requirements.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt

COPY . .

# Static files are collected into the image (whitenoise serves them). The
# production settings demand their secrets even here, so they get throwaway
# values that exist only for this one command; nothing connects to them.
RUN DJANGO_SECRET_KEY="collectstatic-only-$(python -c 'import secrets; print(secrets.token_hex(16))')" \
    DJANGO_ALLOWED_HOSTS=build.invalid \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    REDIS_URL=redis://build.invalid:6379/0 \
    KREO_VAR_DIR=/tmp/kreo-build \
    python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/kreo-build /tmp/collectstatic.sqlite3 \
    && mkdir -p /app/var /var/lib/kreo/backups/copy1 /var/lib/kreo/backups/copy2 /var/lib/kreo/audit-spool \
    && chown -R kreo:kreo /app/var /var/lib/kreo \
    && chmod -R 0700 /var/lib/kreo

USER kreo:kreo

EXPOSE 8000

# Threaded workers and timeouts chosen for slow clients: the config file.
CMD ["gunicorn", "-c", "deploy/gunicorn/gunicorn.conf.py", "--bind=0.0.0.0:8000", \
     "--worker-tmp-dir=/dev/shm"]
