FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Chromium (Debian's) lets `docker compose exec web pytest` run the browser tests too.
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium postgresql-client \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN DEBUG=0 DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

EXPOSE 8000
# HTTP; docker-compose.yml runs the WebSockets on daphne beside it (docs/OPERATIONS.md, "Processes").
CMD ["uvicorn", "--host=0.0.0.0", "--port=8000", "--loop=uvloop", "--http=httptools", "--ws=websockets", \
     "--lifespan=off", "--no-proxy-headers", "--timeout-keep-alive=75", "quantumtrades.asgi:application"]
