"""`semedit app`: the web app, a FastAPI backend over `semedit.service` and one small page. It holds no
method logic: methods, their settings (from their config dataclasses) and every check come from below."""
