# One image for web (uvicorn), worker and beat; docker-compose.yml picks the command.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# Node.js gives stdio MCP servers started with npx (e.g. the filesystem server).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN DEBUG=0 SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0

RUN useradd --create-home --uid 1000 app && mkdir -p /app/workspace && chown -R app /app/workspace
USER app

EXPOSE 8000
CMD ["sh", "-c", "exec uvicorn platform_site.asgi:application --host 0.0.0.0 --port 8000 --workers ${WEB_CONCURRENCY:-$(nproc)} --loop uvloop --http httptools --ws websockets --ws-per-message-deflate false --lifespan off --no-access-log --proxy-headers --ws-max-size ${WS_MAX_MESSAGE_BYTES:-4194304}"]
