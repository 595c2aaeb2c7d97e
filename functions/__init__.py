"""The Lambda functions: one folder per function (a thin `app.py`), shared logic in `common`."""
