"""slotkeeper's one HTTP port: the route table (``app``), the server it runs on (``server``,
uvicorn in a thread) and what every answer carries (``security``). A shell, like the daemon:
only ``slotkeeper run`` and ``slotkeeper ui`` import it, so the CLI's other commands never load
Starlette or uvicorn."""
