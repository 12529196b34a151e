"""reprofarm REST controller."""
