-- One database and one role per service that keeps state (docker compose only).
-- DEV-ONLY passwords, the same ones deploy/docker-compose.yml puts in FERRY_DATABASE_URL.
CREATE ROLE promotion LOGIN PASSWORD 'dev-only-promotion';
CREATE DATABASE promotion OWNER promotion;
CREATE ROLE notifier LOGIN PASSWORD 'dev-only-notifier';
CREATE DATABASE notifier OWNER notifier;
CREATE ROLE insights LOGIN PASSWORD 'dev-only-insights';
CREATE DATABASE insights OWNER insights;
