# Production image: slim Python, non-root, the production server, a health check.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    IDP_INSTANCE_PATH=/var/lib/idp

WORKDIR /app
COPY pyproject.toml README.md ./
COPY idp ./idp
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
RUN pip install --no-compile '.[postgres,redis]' \
 && useradd --system --uid 10001 --home-dir /var/lib/idp --create-home idp

USER idp
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os, sys, urllib.parse as p, urllib.request as r; host = p.urlsplit(os.environ['IDP_ISSUER']).netloc; sys.exit(0 if r.urlopen(r.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}), timeout=2).status == 200 else 1)"

# IDP_ISSUER (https), IDP_SECRET_KEY and IDP_DATABASE_URL come from the environment at run time.
CMD ["sh", "-c", "idp db upgrade && exec idp serve --host 0.0.0.0 --port 8000"]
