#!/bin/sh
# The web container: migrate, seed the demo, keep the demo book moving, serve.
set -e
python manage.py migrate --noinput
python manage.py seed_demo
python manage.py simulate_market &
exec daphne -b 0.0.0.0 -p 8000 quantumtrades.asgi:application
