"""One async client per upstream: Pipelines, Langfuse, Open WebUI.

Each owns its URLs, timeouts, auth and error translation, and never logs or raises with a
response body (Pipelines' valves routes return the Langfuse secret key in clear).
"""
