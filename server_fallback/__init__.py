"""FastAPI server fallback and `rid serve`. Built in the "Server fallback" issue."""
