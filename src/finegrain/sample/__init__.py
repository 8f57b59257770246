"""The bundled synthetic sample dataset (rendered cars with planted problems and an answer key)."""
