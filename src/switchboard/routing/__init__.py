"""Routing: balancing, health, attempts and smart (learned) routers."""
