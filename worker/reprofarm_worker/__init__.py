"""reprofarm Celery worker."""
