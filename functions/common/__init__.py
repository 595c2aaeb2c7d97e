"""What the functions share: settings, the model registry and cache, the prediction store,
request parsing and the service functions. AWS clients are passed in, never built here."""
