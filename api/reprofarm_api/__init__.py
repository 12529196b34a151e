"""reprofarm's REST controller (FastAPI), organised by domain: jobs/, runs/,
agents/ (registration and leases), artifacts/, builds/, stats/, ops/ (health,
metrics, tokens). Routers parse, authorise, call a function of reprofarm_db,
and return a schema; domain errors become 4xx in errors.py, once."""
